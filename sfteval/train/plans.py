"""Which micro-batches each optimizer step trains on, across epochs, and the eval batches.

`StepPlans` maps a global step to (epoch, step in epoch) and computes each epoch's plan
(train.batching, deterministic in seed and epoch) on demand, one epoch in memory at a
time, so a resumed run finds its step's batches without any saved sampler state.
`eval_batches` gives every process the same number of eval forward passes (FSDP /
ZeRO-3 gather parameters in each one), padding the last with label-free repeats.
"""

from __future__ import annotations

from typing import Any

from sfteval.errors import SftevalError
from sfteval.train.config import TrainConfig


class StepPlans:
    """Epoch plans computed on demand; maps a global step to (epoch, step in epoch)."""

    def __init__(self, lengths: list[int], cfg: TrainConfig, world: int) -> None:
        from sfteval.train.batching import plan_epoch, steps_in

        self._make = lambda e: plan_epoch(
            lengths,
            micro_batch_size=cfg.micro_batch_size,
            seed=cfg.seed,
            epoch=e,
            group_by_length=cfg.group_by_length,
            packing=cfg.packing,
            pack_len=cfg.cutoff_len,
        )
        self._steps = lambda plan: steps_in(plan, world=world, accum=cfg.grad_accum)
        self._cache: dict[int, Any] = {}

    def plan(self, epoch: int) -> Any:
        if epoch not in self._cache:
            self._cache = {epoch: self._make(epoch)}  # one epoch at a time in memory
        return self._cache[epoch]

    def epoch_steps(self, epoch: int) -> int:
        return self._steps(self.plan(epoch))

    def total(self, cfg: TrainConfig) -> int:
        if cfg.max_steps is not None:
            return cfg.max_steps
        return sum(self.epoch_steps(e) for e in range(cfg.epochs))

    def locate(self, step: int) -> tuple[int, int, int]:
        """(epoch, step within epoch, steps in that epoch)."""
        epoch = 0
        while True:
            n = self.epoch_steps(epoch)
            if n == 0:
                raise SftevalError("the data is smaller than one global batch", field="micro_batch_size")
            if step < n:
                return epoch, step, n
            step -= n
            epoch += 1


def eval_batches(samples: Any, cfg: TrainConfig, pad_id: int, rank: int, world: int) -> list[dict[str, Any]]:
    """This process's eval batches; every process gets as many (the last padded, label-free)."""
    from sfteval.train.batching import collate
    from sfteval.train.distributed import eval_shard

    order = sorted(range(len(samples)), key=lambda i: len(samples[i]))
    chunks = [order[k : k + cfg.micro_batch_size] for k in range(0, len(order), cfg.micro_batch_size)]
    out = []
    for c in eval_shard(len(chunks), rank, world):
        batch = collate([[samples[i]] for i in chunks[0 if c is None else c]], pad_id, packed=False)
        if c is None:  # the same number of forward passes on every rank, adding no loss
            batch["labels"].fill_(-100)
        out.append(batch)
    return out
