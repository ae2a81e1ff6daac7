"""The resume state inside a checkpoint: optimizer, scheduler and RNG, never a second copy of the weights.

`checkpoint-<step>/resume_state/` holds
- the optimizer state: `optimizer.bin` (one process or DDP, through Accelerate's
  `save_accelerator_state` with no model), Accelerate's FSDP optimizer save (gathered
  full optimizer state) under FSDP, or DeepSpeed's own engine checkpoint under ZeRO
  (DeepSpeed saves its partitioned fp32 master weights with the optimizer; it has no
  optimizer-only save);
- the trainer's LR scheduler (`scheduler.bin`) and every process's RNG states
  (`random_states_<rank>.pkl`: python, numpy, torch), so dropout resumes bit-exactly;
- `master_weights.safetensors` only when the checkpoint's weights were cast to a
  narrower dtype than the fp32 training copy (a bf16 base): resuming from the bf16 copy
  would not reproduce the uninterrupted run.

The weights themselves are the checkpoint's own `save_pretrained` files (full model or
adapter), loaded by `sfteval.train.model.load_model` before Accelerate wraps the model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MASTER = "master_weights.safetensors"


def _kind(accelerator: Any) -> str:
    from accelerate.utils import DistributedType

    return {DistributedType.FSDP: "fsdp", DistributedType.DEEPSPEED: "deepspeed"}.get(accelerator.distributed_type, "plain")


def save_resume_state(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, where: Path, *, master: dict[str, Any] | None) -> None:
    from accelerate.checkpointing import save_accelerator_state

    kind = _kind(accelerator)
    if accelerator.is_main_process:
        where.mkdir(parents=True, exist_ok=True)
    accelerator.wait_for_everyone()
    if kind == "deepspeed":
        model.save_checkpoint(str(where / "deepspeed"), "engine")
    elif kind == "fsdp":
        from accelerate.utils import save_fsdp_optimizer

        save_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, str(where))
    save_accelerator_state(
        str(where),
        [],
        [optimizer] if kind == "plain" else [],
        [scheduler] if scheduler is not None else [],
        [],
        accelerator.process_index,
        accelerator.step,
        safe_serialization=False,
    )
    if master is not None and accelerator.is_main_process:
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in master.items()}, str(where / MASTER))
    accelerator.wait_for_everyone()


def load_resume_state(accelerator: Any, model: Any, optimizer: Any, scheduler: Any, where: Path) -> None:
    from accelerate.checkpointing import load_accelerator_state

    kind = _kind(accelerator)
    if kind == "deepspeed":
        model.load_checkpoint(str(where / "deepspeed"), "engine")
    elif kind == "fsdp":
        from accelerate.utils import load_fsdp_optimizer

        load_fsdp_optimizer(accelerator.state.fsdp_plugin, accelerator, optimizer, model, str(where))
    load_accelerator_state(
        str(where),
        [],
        [optimizer] if kind == "plain" else [],
        [scheduler] if scheduler is not None else [],
        [],
        accelerator.process_index,
        map_location="cpu",
    )


def master_file(ckpt: Path, state_dir: str) -> Path | None:
    p = ckpt / state_dir / MASTER
    return p if p.is_file() else None
