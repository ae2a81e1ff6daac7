"""Training settings: one frozen dataclass, built from defaults < TOML < CLI flags.

Every field is a knob in the TOML file (top level, LoRA under `[lora]`) and a flag
(`--micro-batch-size 4`, `--lora-r 16`). Unknown TOML keys are refused, so a misspelt
knob never silently does nothing, and every value is type-checked against its field
(`packing = "false"` is an error naming `packing` and "true or false", not packing on).
`--config NAME` takes a file or a built-in name from `sfteval/train/configs/` (`tiny`,
`full`, `lora`, `qlora`, `fsdp`, `zero2`, `zero3`). The resolved config is saved with
every checkpoint.
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
Strategy = Literal["auto", "ddp", "fsdp", "zero2", "zero3"]
CONFIG_DIR = Path(__file__).resolve().parent / "configs"


@dataclass(frozen=True)
class LoraSettings:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    # "all-linear" (peft's shorthand) or module names such as ["q_proj", "v_proj"].
    target_modules: tuple[str, ...] = ("all-linear",)
    save_merged: bool = False  # also write OUT/merged/ (full weights) at the end
    qlora: bool = False  # 4-bit NF4 base through bitsandbytes (a CUDA GPU only)


@dataclass(frozen=True)
class TrainConfig:
    model: str = ""
    data: tuple[str, ...] = ()
    output: str = ""
    eval_data: tuple[str, ...] = ()
    model_revision: str | None = None
    format: Literal["auto", "alpaca", "sharegpt", "messages"] = "auto"
    on_bad: Literal["error", "skip"] = "error"
    chat_template: str | None = None
    end_tokens: tuple[str, ...] = ()
    pad_token: str | None = None
    eos_token: str | None = None
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
    adam_eps: float = 1e-8
    schedule: Schedule = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0  # used when warmup_steps is 0
    max_grad_norm: float | None = 1.0
    seed: int = 0
    precision: Precision = "fp32"
    gradient_checkpointing: bool = False
    strategy: Strategy = "auto"
    deepspeed_config: str | None = None
    save_steps: int | None = None  # None: save at the end only
    keep_last: int = 2
    eval_steps: int | None = None  # None: evaluate at the end only (when eval_data given)
    logging_steps: int = 1
    resume: bool = False
    overwrite: bool = False
    tokenize_workers: int = 0  # 0: automatic (several processes for large data)
    cache_dir: str | None = None  # None: $SFTEVAL_CACHE/tokenized or ~/.cache/sfteval/tokenized; "none": off
    trackers: tuple[str, ...] = ()  # accelerate trackers: "tensorboard", "wandb", ...
    progress: bool = True
    lora: LoraSettings = field(default_factory=LoraSettings)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        for obj, prefix in ((self, ""), (self.lora, "lora.")):
            hints = typing.get_type_hints(type(obj))
            for f in dataclasses.fields(obj):
                if f.name != "lora" and not _check(getattr(obj, f.name), hints[f.name])[0]:
                    value = getattr(obj, f.name)
                    raise SftevalError(f"expected {_type_name(hints[f.name])}, got {type(value).__name__} {value!r}", field=prefix + f.name)
        if not self.model:
            raise SftevalError("no base model", field="model", hint="pass --model DIR (or set model in the TOML)")
        if not self.data:
            raise SftevalError("no training data", field="data", hint="pass --data FILE")
        if not self.output:
            raise SftevalError("no output folder", field="output", hint="pass --output DIR")
        for name in ("cutoff_len", "micro_batch_size", "grad_accum", "epochs", "logging_steps", "keep_last"):
            if getattr(self, name) < 1:
                raise SftevalError(f"must be >= 1, got {getattr(self, name)}", field=name)
        if self.resume and self.overwrite:
            raise SftevalError("--resume and --overwrite contradict each other", field="overwrite")
        if self.deepspeed_config and self.strategy not in ("auto", "zero2", "zero3"):
            raise SftevalError(f"deepspeed_config given with strategy '{self.strategy}'", field="strategy")
        if self.lora.qlora and not self.lora.enabled:
            raise SftevalError("qlora needs LoRA", field="lora.qlora", hint="set lora.enabled = true (--lora-enabled)")
        return self


# What each knob does, for --help (defaults are appended from the dataclass).
HELP: dict[str, str] = {
    "model": "base model: a local folder or a hub id",
    "data": "training files (alpaca / sharegpt / messages; JSONL, JSON or Parquet)",
    "output": "output folder for checkpoint-<step>/ and train_log.jsonl (must be empty or new)",
    "eval_data": "held-out files for eval_loss",
    "model_revision": "hub revision (branch, tag or commit) of --model",
    "format": "row format of the data files",
    "on_bad": "a bad row (or one the chat template cannot render) stops the run, or is skipped and counted",
    "chat_template": "a Jinja file or a built-in name (alpaca, chatml, chatml_training, llama3, deepseek_coder); default: the tokenizer's",
    "end_tokens": "extra end-of-turn tokens that stop generation and are trained (e.g. '<|EOT|>')",
    "pad_token": "token used for padding (must exist in the vocabulary)",
    "eos_token": "the tokenizer's EOS token (must exist in the vocabulary)",
    "cutoff_len": "longest sample in tokens; longer conversations lose their oldest whole turns",
    "last_turn_only": "train only the final assistant response",
    "packing": "pack samples into rows of cutoff_len tokens (no attention across samples)",
    "group_by_length": "put samples of similar length in one micro-batch (less padding)",
    "micro_batch_size": "rows per forward pass on each process",
    "grad_accum": "micro-batches per optimizer step (the trainer accumulates; accelerate's must agree)",
    "epochs": "passes over the data",
    "max_steps": "optimizer steps (overrides epochs)",
    "lr": "peak learning rate",
    "weight_decay": "AdamW weight decay (not applied to biases and norms)",
    "adam_beta1": "AdamW beta1",
    "adam_beta2": "AdamW beta2",
    "adam_eps": "AdamW epsilon",
    "schedule": "learning-rate schedule after warmup",
    "warmup_steps": "linear warmup steps",
    "warmup_ratio": "warmup as a fraction of all steps (when warmup_steps is 0)",
    "max_grad_norm": "gradient clipping norm",
    "seed": "seed of the data order and initialisation",
    "precision": "fp32, or bf16 autocast (a LoRA base is then loaded in bf16)",
    "gradient_checkpointing": "recompute activations in backward (less memory)",
    "strategy": "auto (Accelerate's choice), ddp, fsdp (full shard), zero2 or zero3 (DeepSpeed)",
    "deepspeed_config": "a DeepSpeed JSON ('auto' values are filled from these settings)",
    "save_steps": "save a checkpoint every N steps (default: at the end only)",
    "keep_last": "checkpoints of this run kept by rotation",
    "eval_steps": "evaluate every N steps (default: at the end only)",
    "logging_steps": "write a train_log.jsonl line every N steps",
    "resume": "continue from the newest checkpoint in --output",
    "overwrite": "move an earlier run in --output aside (to OUTPUT.old-<time>; nothing is deleted)",
    "tokenize_workers": "processes for tokenization (0: automatic)",
    "cache_dir": "tokenization cache folder ('none' disables it)",
    "trackers": "Accelerate trackers (tensorboard, wandb, ...)",
    "progress": "show a progress bar",
    "lora.enabled": "train a LoRA adapter instead of all weights",
    "lora.r": "LoRA rank",
    "lora.alpha": "LoRA alpha",
    "lora.dropout": "LoRA dropout",
    "lora.target_modules": "modules to adapt ('all-linear' or names such as q_proj v_proj)",
    "lora.save_merged": "also write OUT/merged/ (the adapter folded into the base)",
    "lora.qlora": "QLoRA: 4-bit NF4 base via bitsandbytes (CUDA only)",
}


def _type_name(hint: Any) -> str:
    if hint is bool:
        return "true or false"
    if hint is int:
        return "an integer"
    if hint is float:
        return "a number"
    if hint is str:
        return "a string"
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin is tuple:
        return "a list of strings"
    if origin in (typing.Union, types.UnionType):
        return " or ".join("nothing" if a is type(None) else _type_name(a) for a in args)
    return getattr(hint, "__name__", str(hint))


def _check(value: Any, hint: Any) -> tuple[bool, Any]:
    """(ok, value converted to the field's type)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is not type(None):
                ok, v = _check(value, a)
                if ok:
                    return True, v
        return False, value
    if hint is bool:
        return isinstance(value, bool), value
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if hint is str:
        return isinstance(value, str), value
    if origin is Literal:
        return value in args, value
    if origin is tuple:
        if isinstance(value, str):
            return True, (value,)
        if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
            return True, tuple(value)
        return False, value
    return True, value


def _coerce(name: str, value: Any, hint: Any, path: str) -> Any:
    ok, converted = _check(value, hint)
    if not ok:
        raise SftevalError(f"expected {_type_name(hint)}, got {type(value).__name__} {value!r}", path=path, field=name)
    return converted


def from_dict(raw: dict[str, Any], *, path: str = "<dict>") -> TrainConfig:
    """Build a TrainConfig from a TOML-shaped dict (LoRA under `lora`), type-checked."""
    allowed = {f.name for f in dataclasses.fields(TrainConfig)}
    check_fields(raw, allowed, path=path)
    hints = typing.get_type_hints(TrainConfig)
    kwargs = {k: _coerce(k, v, hints[k], path) for k, v in raw.items() if k != "lora"}
    if "lora" in raw:
        table = raw["lora"]
        if isinstance(table, LoraSettings):
            table = dataclasses.asdict(table)
        if not isinstance(table, dict):
            raise SftevalError("expected a table", path=path, field="lora")
        check_fields(table, {f.name for f in dataclasses.fields(LoraSettings)}, path=path, section="lora")
        lhints = typing.get_type_hints(LoraSettings)
        kwargs["lora"] = LoraSettings(**{k: _coerce(f"lora.{k}", v, lhints[k], path) for k, v in table.items()})
    return TrainConfig(**kwargs)


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def resolve_config_path(name: str) -> Path:
    """A TOML file, or a built-in config by name (`zero3`, `zero3.toml`, `train/configs/zero3.toml`)."""
    p = Path(name)
    if p.is_file():
        return p
    stem = p.name[: -len(".toml")] if p.name.endswith(".toml") else p.name
    builtin = CONFIG_DIR / f"{stem}.toml"
    if builtin.is_file():
        return builtin
    raise SftevalError("config file not found", path=name, field="config", hint=f"a TOML file or one of: {', '.join(builtin_configs())}")


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


def _default_text(f: dataclasses.Field) -> str:
    value = f.default if f.default is not dataclasses.MISSING else None
    if value in (None, "", ()):
        return ""
    if isinstance(value, tuple):
        value = " ".join(value)
    return f" (default: {value})"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m sfteval.train",
        description="Supervised fine-tuning on Accelerate. Flags override the --config TOML; TOML keys are the flag names with _.",
    )
    p.add_argument("--config", help=f"TOML file or built-in name ({', '.join(builtin_configs())}); flags override it")
    p.add_argument("--dry-run", action="store_true", help="load and encode the data, print two encoded examples with their supervised spans and the drop counts, then stop")
    for prefix, cls in (("", TrainConfig), ("lora-", LoraSettings)):
        hints = typing.get_type_hints(cls)
        group = p.add_argument_group("LoRA" if prefix else "training")
        for f in dataclasses.fields(cls):
            if f.name == "lora":
                continue
            typ, extra = _flag_type(hints[f.name])
            dest = f"{prefix}{f.name}".replace("-", "_")
            key = f"lora.{f.name}" if prefix else f.name
            kwargs: dict[str, Any] = {"dest": dest, "default": None, "help": HELP.get(key, "") + _default_text(f), **extra}
            if typ is not None:
                kwargs["type"] = typ
            # `--log-to` is what `sfteval run/compare/gate` call the same choice of trackers.
            aliases = ["--log-to"] if key == "trackers" else []
            group.add_argument(f"--{prefix}{f.name.replace('_', '-')}", *aliases, **kwargs)
    return p


def config_from_args(argv: list[str] | None = None) -> TrainConfig:
    """defaults < --config TOML < flags."""
    return parse_args(argv)[0]


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, argparse.Namespace]:
    ns = build_parser().parse_args(argv)
    raw: dict[str, Any] = {}
    path = "<flags>"
    if ns.config:
        cfg_path = resolve_config_path(ns.config)
        raw, path = load_toml(cfg_path), str(cfg_path)
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
    return from_dict(raw, path=path).validate(), ns


def load_config(path: str | Path, **overrides: Any) -> TrainConfig:
    """TOML file (or built-in name) plus keyword overrides (the in-process API's equivalent of flags)."""
    cfg_path = resolve_config_path(str(path))
    raw = load_toml(cfg_path)
    raw.update(overrides)
    return from_dict(raw, path=str(cfg_path)).validate()
