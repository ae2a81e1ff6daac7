"""Sharded training through Accelerate: DDP, FSDP (full shard) and DeepSpeed ZeRO-2/3.

- `strategy = "fsdp"`: Accelerate's FSDP2 plugin, parameters, gradients and optimizer
  state fully sharded (reshard after forward), a full state dict gathered on save.
  Accelerate selects FSDP only on an accelerator; its FSDP2 path itself runs on gloo CPU
  processes, so on a CPU the trainer selects it (that is how the two-process test runs).
- `strategy = "zero2" | "zero3"` or `deepspeed_config = FILE`: a DeepSpeed config
  (the built-in `configs/zero{2,3}.json`, or the user's file, e.g. DeepSeek-Coder's
  `ds_config_zero3.json` as is). `resolve_deepspeed_config` fills every "auto" from the
  trainer's settings and refuses an explicit value that contradicts them (batch sizes,
  accumulation, clipping, precision, optimizer hyper-parameters), naming the key. An
  `optimizer` block of type Adam/AdamW and a `scheduler` block of type WarmupLR /
  WarmupDecayLR / WarmupCosineLR are USED (DeepSpeed builds and steps them); other types
  are refused. An "auto" left anywhere else is refused.
- Accumulation: the trainer accumulates through `accelerator.accumulate` with its own
  `grad_accum`; Accelerate (and DeepSpeed) divide the loss by that count in backward,
  and `loop.train_step` multiplies it back, so the gradient is divided exactly once.
  An `accelerate launch --gradient_accumulation_steps N` that disagrees with `grad_accum`
  is refused instead of silently dividing again.
- Evaluation is sharded evenly: every process runs the same number of forward passes
  (the last chunk padded with a label-free repeat), as FSDP / ZeRO-3 collectives need.

Not covered on a CPU: DeepSpeed itself (its engine needs an accelerator here); the
ZeRO-3-vs-DDP equivalence test skips without a GPU.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.train.config import CONFIG_DIR, TrainConfig

DS_OPTIMIZERS = {"adam", "adamw"}
# the parameters of each DeepSpeed schedule that the trainer's settings decide
DS_SCHEDULERS = {
    "WarmupLR": ("warmup_min_lr", "warmup_max_lr", "warmup_num_steps"),
    "WarmupDecayLR": ("warmup_min_lr", "warmup_max_lr", "warmup_num_steps", "total_num_steps"),
    "WarmupCosineLR": ("warmup_num_steps", "total_num_steps"),
}


def deepspeed_source(cfg: TrainConfig) -> str | None:
    if cfg.deepspeed_config:
        return cfg.deepspeed_config
    if cfg.strategy in ("zero2", "zero3"):
        return str(CONFIG_DIR / f"{cfg.strategy}.json")
    return None


def load_deepspeed_json(path: str) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise SftevalError("DeepSpeed config not found", path=path, field="deepspeed_config")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SftevalError(f"malformed JSON: {e}", path=path, field="deepspeed_config") from e


def _fill(conf: dict[str, Any], key: str, ours: Any, where: str) -> None:
    """'auto' (or absent) -> ours; an explicit different value is a contradiction."""
    value = conf.get(key, "auto")
    if value == "auto":
        conf[key] = ours
    elif value != ours and not (isinstance(value, (int, float)) and isinstance(ours, (int, float)) and float(value) == float(ours)):
        raise SftevalError(
            f"'{key}' is {value!r} in the DeepSpeed config but {ours!r} in the training settings",
            path=where,
            field=key,
            hint="set it to \"auto\" (filled from the training settings) or make the two agree",
        )


def _leftover_auto(obj: Any, prefix: str = "") -> str | None:
    if obj == "auto":
        return prefix or "<root>"
    if isinstance(obj, dict):
        for k, v in obj.items():
            if (found := _leftover_auto(v, f"{prefix}.{k}" if prefix else k)) is not None:
                return found
    return None


def resolve_deepspeed_config(
    raw: dict[str, Any], cfg: TrainConfig, *, world: int, hidden_size: int, total_steps: int, warmup_steps: int, where: str = "<deepspeed>"
) -> tuple[dict[str, Any], dict[str, str]]:
    """A DeepSpeed config with no "auto" left, and what builds the optimizer / schedule."""
    conf = copy.deepcopy(raw)
    _fill(conf, "train_micro_batch_size_per_gpu", cfg.micro_batch_size, where)
    _fill(conf, "gradient_accumulation_steps", cfg.grad_accum, where)
    _fill(conf, "train_batch_size", cfg.micro_batch_size * cfg.grad_accum * world, where)
    _fill(conf, "gradient_clipping", float(cfg.max_grad_norm or 0.0), where)
    for half, on in (("bf16", cfg.precision == "bf16"), ("fp16", False)):
        block = conf.setdefault(half, {})
        if half == "fp16" and block.get("enabled") is True:
            raise SftevalError("fp16 is not supported by this trainer", path=where, field="fp16.enabled", hint="use bf16 (precision = \"bf16\")")
        _fill(block, "enabled", on, f"{where} ({half})")
    zero = conf.setdefault("zero_optimization", {})
    for key, value in (
        ("reduce_bucket_size", hidden_size * hidden_size),
        ("stage3_prefetch_bucket_size", int(0.9 * hidden_size * hidden_size)),
        ("stage3_param_persistence_threshold", 10 * hidden_size),
    ):
        if zero.get(key) == "auto":
            zero[key] = value
    built = {"optimizer": "trainer (AdamW)", "scheduler": f"trainer ({cfg.schedule})"}
    if "optimizer" in conf:
        opt = conf["optimizer"]
        if str(opt.get("type", "")).lower() not in DS_OPTIMIZERS:
            raise SftevalError(
                f"optimizer type {opt.get('type')!r} in the DeepSpeed config: this trainer trains with AdamW",
                path=where, field="optimizer.type", hint="set type \"AdamW\" or remove the optimizer block",
            )
        params = opt.setdefault("params", {})
        for key, ours in (("lr", cfg.lr), ("betas", [cfg.adam_beta1, cfg.adam_beta2]), ("eps", cfg.adam_eps), ("weight_decay", cfg.weight_decay)):
            _fill(params, key, ours, f"{where} (optimizer.params)")
        built["optimizer"] = f"deepspeed ({opt['type']})"
    if "scheduler" in conf:
        sch = conf["scheduler"]
        if sch.get("type") not in DS_SCHEDULERS:
            raise SftevalError(
                f"scheduler type {sch.get('type')!r} in the DeepSpeed config is not supported",
                path=where, field="scheduler.type", hint=f"one of {sorted(DS_SCHEDULERS)}, or remove the block (the trainer's schedule is used)",
            )
        params = sch.setdefault("params", {})
        ours = {"warmup_num_steps": warmup_steps, "total_num_steps": total_steps, "warmup_max_lr": cfg.lr, "warmup_min_lr": 0.0}
        for key in DS_SCHEDULERS[sch["type"]]:
            _fill(params, key, ours[key], f"{where} (scheduler.params)")
        built["scheduler"] = f"deepspeed ({sch['type']})"
    if (left := _leftover_auto(conf)) is not None:
        raise SftevalError(f"'{left}' is \"auto\" and the trainer has no value for it", path=where, field=left, hint="give it a value")
    return conf, built


def partial_state() -> Any:
    """Accelerate's process state, set up before the Accelerator (data preparation needs ranks).

    PartialState does not read ACCELERATE_USE_CPU itself (AcceleratorState does): without it,
    torchrun'd CPU processes would each think they are alone."""
    from accelerate import PartialState
    from accelerate.utils import parse_flag_from_env

    return PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"))


def check_accumulation(cfg: TrainConfig) -> None:
    env = os.environ.get("ACCELERATE_GRADIENT_ACCUMULATION_STEPS")
    if env and env.isdigit() and int(env) not in (1, cfg.grad_accum):
        raise SftevalError(
            f"accelerate's gradient_accumulation_steps is {env} but grad_accum is {cfg.grad_accum}",
            field="grad_accum",
            hint=f"the trainer accumulates itself: pass --grad-accum {env} (or drop accelerate's setting)",
        )


def make_accelerator(cfg: TrainConfig, out: Path, ds_config: dict[str, Any] | None) -> Any:
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import DeepSpeedPlugin, DistributedType, FullyShardedDataParallelPlugin, GradientAccumulationPlugin

    check_accumulation(cfg)
    AcceleratorState._reset_state()  # a second in-process run may use another precision
    kwargs: dict[str, Any] = {}
    fsdp = None
    if cfg.strategy == "fsdp":
        fsdp = FullyShardedDataParallelPlugin(
            fsdp_version=2,
            reshard_after_forward=True,  # FULL_SHARD
            auto_wrap_policy="transformer_based_wrap",
            state_dict_type="FULL_STATE_DICT",
            cpu_ram_efficient_loading=False,
        )
        kwargs["fsdp_plugin"] = fsdp
    if ds_config is not None:
        kwargs["deepspeed_plugin"] = DeepSpeedPlugin(hf_ds_config=ds_config, gradient_accumulation_steps=cfg.grad_accum)
    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.precision == "bf16" else "no",
        gradient_accumulation_plugin=GradientAccumulationPlugin(num_steps=cfg.grad_accum, sync_with_dataloader=False),
        log_with=list(cfg.trackers) or None,
        project_dir=str(out),
        **kwargs,
    )
    state = AcceleratorState()
    if fsdp is not None and state.distributed_type == DistributedType.MULTI_CPU:
        # see the module docstring; both shared states, as every AcceleratorState() re-reads PartialState's
        from accelerate import PartialState

        PartialState._shared_state["distributed_type"] = DistributedType.FSDP
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = fsdp
    if cfg.strategy in ("zero2", "zero3") or cfg.deepspeed_config:
        if state.distributed_type != DistributedType.DEEPSPEED:
            raise SftevalError("DeepSpeed was asked for but Accelerate did not enable it", field="strategy", hint="pip install deepspeed; launch with accelerate launch or torchrun")
    return accelerator


def is_deepspeed(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.DEEPSPEED


def eval_shard(n_chunks: int, rank: int, world: int) -> list[int | None]:
    """Chunk indices for `rank`: every rank gets ceil(n/world); None marks a padding pass."""
    per = -(-n_chunks // world)
    return [i if (i := rank + world * k) < n_chunks else None for k in range(per)]
