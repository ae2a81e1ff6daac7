"""Training settings: one frozen dataclass, built from defaults < TOML < CLI flags.

Every field is a knob in the TOML file (top level, LoRA under `[lora]`) and a flag
(`--micro-batch-size 4`, `--lora-r 16`). Unknown TOML keys are refused, so a misspelt
knob never silently does nothing. The resolved config is saved with every checkpoint.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sfteval.config import check_fields, load_toml
from sfteval.errors import SftevalError

Schedule = Literal["linear", "cosine", "constant"]
Precision = Literal["fp32", "bf16"]


@dataclass(frozen=True)
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # "all-linear" (peft's shorthand) or module names such as ["q_proj", "v_proj"].
    target_modules: tuple[str, ...] = ("all-linear",)
    save_merged: bool = False  # also write OUT/merged/ (full weights) at the end


@dataclass(frozen=True)
class TrainConfig:
    model: str = ""
    data: tuple[str, ...] = ()
    output: str = ""
    eval_data: tuple[str, ...] = ()
    model_revision: str | None = None
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = "auto"
    on_bad: Literal["error", "skip"] = "error"
    cutoff_len: int = 1024
    last_turn_only: bool = False
    packing: bool = False
    group_by_length: bool = True
    micro_batch_size: int = 4
    grad_accum: int = 1
    epochs: int = 1
    max_steps: int | None = None  # overrides epochs when set
    lr: float = 2e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    save_steps: int | None = None  # None: save at the end only
    keep_last: int = 2
    eval_steps: int | None = None  # None: evaluate at the end only (when eval_data given)
    logging_steps: int = 1
    resume: bool = False
    trackers: tuple[str, ...] = ()  # accelerate trackers: "tensorboard", "wandb", ...
    progress: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        if not self.model:
            raise SftevalError("no base model", field="model", hint="pass --model DIR (or set model in the TOML)")
        if not self.data:
            raise SftevalError("no training data", field="data", hint="pass --data FILE")
        if not self.output:
            raise SftevalError("no output folder", field="output", hint="pass --output DIR")
        for name in ("cutoff_len", "micro_batch_size", "grad_accum", "epochs", "logging_steps", "keep_last"):
            if getattr(self, name) < 1:
                raise SftevalError(f"must be >= 1, got {getattr(self, name)}", field=name)
        for name, allowed in (("schedule", Schedule), ("precision", Precision)):
            if getattr(self, name) not in typing.get_args(allowed):
                raise SftevalError(f"'{getattr(self, name)}' is not one of {typing.get_args(allowed)}", field=name)
        return self


def _coerce(name: str, value: Any, hint: Any, path: str) -> Any:
    """Turn TOML values into the field's type (lists -> tuples, str -> 1-tuple)."""
    origin = typing.get_origin(hint)
    if origin is tuple:
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            raise SftevalError(f"expected a list, got {type(value).__name__}", path=path, field=name)
        return tuple(value)
    return value


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def from_dict(raw: dict[str, Any], *, path: str = "<dict>") -> TrainConfig:
    """Build a TrainConfig from a TOML-shaped dict (LoRA under `lora`)."""
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    check_fields(raw, allowed, path=path)
    hints = _hints(TrainConfig)
    kwargs = {k: _coerce(k, v, hints[k], path) for k, v in raw.items() if k != "lora"}
    if "lora" in raw:
        table = raw["lora"]
        if not isinstance(table, dict):
            raise SftevalError("expected a table", path=path, field="lora")
        check_fields(table, {f.name for f in dataclasses.fields(LoraSettings)}, path=path, section="lora")
        lhints = _hints(LoraSettings)
        kwargs["lora"] = LoraSettings(**{k: _coerce(f"lora.{k}", v, lhints[k], path) for k, v in table.items()})
    return TrainConfig(**kwargs)


def _flag_type(hint: Any) -> tuple[Any, dict[str, Any]]:
    """argparse settings for a field's type hint."""
    args = typing.get_args(hint)
    if hint is bool:
        return None, {"action": argparse.BooleanOptionalAction}
    if typing.get_origin(hint) is tuple:
        return None, {"nargs": "+"}
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # X | None
        inner = next(a for a in args if a is not type(None))
        return inner, {}
    if typing.get_origin(hint) is Literal:
        return None, {"choices": list(args)}
    return hint, {}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train/sft.py",
        description="Supervised fine-tuning on Accelerate. Flags override the --config TOML.",
    )
    p.add_argument("--config", help="TOML file with the knobs (flags override it)")
    for prefix, cls in (("", TrainConfig), ("lora-", LoraSettings)):
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            if f.name == "lora":
                continue
            typ, extra = _flag_type(hints[f.name])
            dest = f"{prefix}{f.name}".replace("-", "_")
            kwargs: dict[str, Any] = {"dest": dest, "default": None, **extra}
            if typ is not None:
                kwargs["type"] = typ
            p.add_argument(f"--{prefix}{f.name.replace('_', '-')}", **kwargs)
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """defaults < --config TOML < flags."""
    ns = build_parser().parse_args(argv)
    raw: dict[str, Any] = {}
    if ns.config:
        raw = load_toml(ns.config)
    path = str(ns.config or "<flags>")
    lora_raw = dict(raw.get("lora", {}))
    for f in dataclasses.fields(TrainConfig):
        if f.name != "lora" and getattr(ns, f.name) is not None:
            raw[f.name] = getattr(ns, f.name)
    for f in dataclasses.fields(LoraSettings):
        value = getattr(ns, f"lora_{f.name}")
        if value is not None:
            lora_raw[f.name] = value
    if lora_raw:
        raw["lora"] = lora_raw
    return from_dict(raw, path=path).validate()


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """TOML file plus keyword overrides (the in-process API's equivalent of flags)."""
    raw = load_toml(path)
    raw.update(overrides)
    return from_dict(raw, path=str(path)).validate()
