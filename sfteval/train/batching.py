"""Batch plans, packing and collation: which samples go into which micro-batch, and how.

A plan is deterministic in (seed, epoch), so a resumed run sees exactly the batches the
uninterrupted run would have seen without saving any sampler state: optimizer step k
of an epoch gives process r the micro-batches `plan[(k * world + r) * accum + j]`,
j < accum. Incomplete global steps at an epoch's end are left out (every process must
take part in each step); their samples come back, reshuffled, next epoch.

- Padding mode: a row is one sample; micro-batches are consecutive in a shuffled order
  or, with length grouping, sorted by length within megabatches of 64 micro-batches (the
  HF `LengthGroupedSampler` idea) and the micro-batches shuffled, so padding is small
  and the order still random.
- Packing mode: samples, shuffled, are packed greedily into rows of up to `pack_len`
  tokens. Position ids restart at 0 for each sample (and for the padding tail), and no
  2D attention mask is passed: transformers then builds the block-diagonal causal mask
  from the position ids (or uses flash-attention varlen), so no token attends across
  samples. Each sample's first token is never a label, so no loss crosses a boundary.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from sfteval.train.data import Encoded

Row = list[int]  # sample indices making up one row of a micro-batch
MicroBatch = list[Row]


def _rng(seed: int, epoch: int) -> random.Random:
    return random.Random(seed * 1_000_003 + epoch)


def pack(lengths: Sequence[int], order: Sequence[int], pack_len: int) -> list[Row]:
    """Greedy in order: start a new row when the next sample would overflow `pack_len`."""
    rows: list[Row] = []
    current: Row = []
    used = 0
    for i in order:
        if current and used + lengths[i] > pack_len:
            rows.append(current)
            current, used = [], 0
        current.append(i)
        used += lengths[i]
    if current:
        rows.append(current)
    return rows


def plan_epoch(
    lengths: Sequence[int],
    *,
    micro_batch_size: int,
    seed: int,
    epoch: int,
    group_by_length: bool = False,
    packing: bool = False,
    pack_len: int = 0,
    megabatch: int = 64,
) -> list[MicroBatch]:
    """The micro-batches of one epoch, in order."""
    rng = _rng(seed, epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if packing:
        rows = pack(lengths, order, pack_len)
    elif group_by_length:
        rows = []
        size = micro_batch_size * megabatch
        for k in range(0, len(order), size):
            chunk = sorted(order[k : k + size], key=lambda i: -lengths[i])
            rows.extend([i] for i in chunk)
    else:
        rows = [[i] for i in order]
    mbs = [rows[k : k + micro_batch_size] for k in range(0, len(rows), micro_batch_size)]
    if group_by_length and not packing:
        # keep full micro-batches together; a short tail batch goes last
        full = [mb for mb in mbs if len(mb) == micro_batch_size]
        rng.shuffle(full)
        mbs = full + [mb for mb in mbs if len(mb) < micro_batch_size]
    return mbs


def steps_in(plan: Sequence[MicroBatch], *, world: int, accum: int) -> int:
    return len(plan) // (world * accum)


def step_batches(plan: Sequence[MicroBatch], step: int, *, rank: int, world: int, accum: int) -> list[MicroBatch]:
    base = (step * world + rank) * accum
    return [plan[base + j] for j in range(accum)]


def padding_waste(plan: Sequence[MicroBatch], lengths: Sequence[int]) -> float:
    """Fraction of padded positions (a measure for length grouping and packing)."""
    real = padded = 0
    for mb in plan:
        row_lens = [sum(lengths[i] for i in row) for row in mb]
        real += sum(row_lens)
        padded += max(row_lens) * len(row_lens)
    return 1 - real / padded if padded else 0.0


def collate(rows: Sequence[Sequence[Encoded]], pad_id: int, *, packed: bool) -> dict[str, Any]:
    """Right-padded tensors; labels are the ids where trained, else -100 (unshifted)."""
    import torch

    width = max(sum(len(s) for s in row) for row in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    pos = torch.zeros((len(rows), width), dtype=torch.long)
    for b, row in enumerate(rows):
        t = 0
        for s in row:
            n = len(s)
            ids[b, t : t + n] = torch.tensor(s.input_ids)
            m = torch.tensor(s.mask)
            labels[b, t : t + n] = torch.where(m, ids[b, t : t + n], -100)
            pos[b, t : t + n] = torch.arange(n)
            attn[b, t : t + n] = 1
            t += n
        pos[b, t:] = torch.arange(width - t)  # the padding tail is its own "sample"
    batch: dict[str, Any] = {"input_ids": ids, "labels": labels}
    if packed:
        batch["position_ids"] = pos
    else:
        batch["attention_mask"] = attn
    return batch


def micro_batch_tensors(samples: Sequence[Encoded], mb: MicroBatch, pad_id: int, *, packed: bool) -> dict[str, Any]:
    return collate([[samples[i] for i in row] for row in mb], pad_id, packed=packed)
