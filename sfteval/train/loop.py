"""The math of one optimizer step, and the pieces around it (optimizer, schedule, eval).

Loss normalisation (the trap of transformers #34263 / TRL #2604): every micro-batch
contributes the SUM of its token losses divided by the number of supervised tokens in
the whole optimizer step, counted over all micro-batches of the step on all processes
(one all-reduce of a count before the forward passes). Data-parallel wrappers average
gradients over processes, so each process scales its loss by the world size; Accelerate
divides by the accumulation count in backward, so the loss is multiplied by it. The
gradient is then exactly d/dθ [Σ token losses / N_step], whatever the split.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from sfteval.train.config import TrainConfig


def token_loss_sum(model: Any, batch: dict[str, Any]) -> Any:
    """Sum of next-token cross-entropy over the supervised tokens of one micro-batch."""
    import torch.nn.functional as F

    inputs = {k: v for k, v in batch.items() if k != "labels"}
    logits = model(**inputs, use_cache=False).logits
    labels = batch["labels"][:, 1:]
    keep = labels != -100
    # only supervised positions go through the fp32 softmax: less memory and time than
    # upcasting the whole (batch, seq, vocab) tensor
    picked = logits[:, :-1][keep].float()
    return F.cross_entropy(picked, labels[keep], reduction="sum")


def count_supervised(batch: dict[str, Any]) -> int:
    return int((batch["labels"][:, 1:] != -100).sum())


def param_groups(model: Any, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases and norms (1-D parameters), the usual convention."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(model: Any, cfg: TrainConfig) -> Any:
    import torch

    return torch.optim.AdamW(
        param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), eps=cfg.adam_eps
    )


def lr_factor(step: int, *, total: int, warmup: int, schedule: str) -> float:
    """Multiplier of the peak lr at `step` (0-based): linear warmup, then decay to 0."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total - warmup)
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def warmup_steps(cfg: TrainConfig, total_steps: int) -> int:
    return cfg.warmup_steps or int(round(cfg.warmup_ratio * total_steps))


def make_scheduler(optimizer: Any, cfg: TrainConfig, total_steps: int) -> Any:
    import torch

    warmup = warmup_steps(cfg, total_steps)
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total=total_steps, warmup=warmup, schedule=cfg.schedule)
    )


def train_step(accelerator: Any, model: Any, micro_batches: list[dict[str, Any]]) -> tuple[float, int]:
    """Forward/backward every micro-batch of one optimizer step; returns (loss, N_step).

    Gradients are left in `.grad`; the caller clips and steps. The returned loss is the
    step's mean token loss over all processes. Each micro-batch runs inside
    `accelerator.accumulate`, so gradient sync (DDP / FSDP) and DeepSpeed's step happen
    only on the last one. Accelerate's backward (or DeepSpeed's engine) divides the loss by
    the accumulation count; the loss is multiplied by it here, so the division by N_step
    is the only one (an `accelerate launch --gradient_accumulation_steps` never divides again).
    """
    import torch

    if len(micro_batches) != accelerator.gradient_accumulation_steps:
        raise RuntimeError(f"{len(micro_batches)} micro-batches for accumulation over {accelerator.gradient_accumulation_steps}")
    local = sum(count_supervised(b) for b in micro_batches)
    total = int(accelerator.reduce(torch.tensor(local, device=accelerator.device), reduction="sum").item())
    # processes: data-parallel wrappers average gradients over them; accumulation: see above
    scale = accelerator.num_processes * accelerator.gradient_accumulation_steps / max(total, 1)
    loss_sum = torch.zeros((), device=accelerator.device)
    for j, batch in enumerate(micro_batches):
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        with accelerator.accumulate(model), accelerator.autocast():
            if accelerator.sync_gradients != (j == len(micro_batches) - 1):
                raise RuntimeError("accelerate's accumulation counter is out of step with the trainer's micro-batches")
            loss = token_loss_sum(model, batch)
            accelerator.backward(loss * scale)
        loss_sum += loss.detach()
    loss_sum = accelerator.reduce(loss_sum, reduction="sum")
    return float(loss_sum) / max(total, 1), total


def evaluate(accelerator: Any, model: Any, batches: Iterable[dict[str, Any]]) -> float:
    """Mean token loss over this process's batches, then over all processes.

    Every process must pass the same number of batches (FSDP / ZeRO-3 gather parameters
    in each forward): `distributed.eval_shard` pads with label-free repeats."""
    import torch

    model.eval()
    loss_sum = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    count = torch.zeros((), device=accelerator.device, dtype=torch.float64)
    with torch.no_grad():
        for batch in batches:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            with accelerator.autocast():
                loss_sum += token_loss_sum(model, batch).double()
            count += count_supervised(batch)
    model.train()
    loss_sum = accelerator.reduce(loss_sum, reduction="sum")
    count = accelerator.reduce(count, reduction="sum")
    return float(loss_sum / count) if float(count) else float("nan")
