"""A short plain causal-LM pretraining loop for the demo's tiny base model.

`build_base(out, docs, ...)`: a byte-level BPE tokenizer trained on the corpus and a
randomly initialised tiny Llama (`sfteval.tinymodel`, head_dim 64 so vLLM accepts it),
then `steps` AdamW steps on random windows of the concatenated corpus (documents end
with EOS; windows cross document boundaries, as in GPT-style pretraining), a held-out
slice of the corpus for the eval loss, and `save_pretrained` into `out`.

Deterministic given the seed on one machine: the init (`TinySpec.seed`), the window
offsets (a seeded torch.Generator) and the data (the corpus seed) are all fixed, and the
run uses a fixed number of threads. Writes `pretrain_log.jsonl` and `pretrain.json`.

Not covered: mixed precision, multi-process training, resume (it takes minutes).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sfteval.fileio import append_jsonl, atomic_write_json
from sfteval.tinymodel import TinySpec

Progress = Callable[[int, int, float], None]  # (step, total, loss)


@dataclass(frozen=True)
class PretrainSettings:
    steps: int = 600
    batch_size: int = 16
    seq_len: int = 192
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.01
    seed: int = 0
    eval_windows: int = 64
    log_every: int = 25
    threads: int = 1  # fixed so that two runs on one machine agree bit for bit (see pipeline._set_threads)


@dataclass(frozen=True)
class PretrainResult:
    model_dir: str
    steps: int
    tokens_seen: int
    corpus_tokens: int
    train_loss: float  # mean token loss over the last logging interval
    eval_loss_init: float  # held-out corpus loss of the random init
    eval_loss: float  # held-out corpus loss at the end
    seconds: float


def tokenize(tokenizer: Any, docs: Sequence[str]) -> Any:
    """All documents' ids, concatenated (special-token texts map to their ids)."""
    import torch

    ids: list[int] = []
    for row in tokenizer(list(docs), add_special_tokens=False)["input_ids"]:
        ids.extend(row)
    return torch.tensor(ids, dtype=torch.long)


def _lr_at(step: int, s: PretrainSettings) -> float:
    if step < s.warmup_steps:
        return s.lr * (step + 1) / s.warmup_steps
    t = (step - s.warmup_steps) / max(1, s.steps - s.warmup_steps)
    return s.lr * (s.min_lr_ratio + (1 - s.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def eval_loss(model: Any, ids: Any, seq_len: int, windows: int) -> float:
    """Mean token loss over up to `windows` consecutive non-overlapping windows."""
    import torch

    n = min(windows, (len(ids) - 1) // seq_len)
    if n < 1:
        raise ValueError("held-out corpus shorter than one window")
    batch = ids[: n * seq_len].view(n, seq_len)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for k in range(0, n, 16):
            chunk = batch[k : k + 16]
            total += float(model(input_ids=chunk, labels=chunk).loss) * len(chunk)
    model.train()
    return total / n


def train_lm(model: Any, train_ids: Any, s: PretrainSettings, log_path: Path | None = None,
             progress: Progress | None = None) -> tuple[float, int]:
    """`s.steps` AdamW steps on random windows; returns (last interval's loss, tokens seen)."""
    import torch

    gen = torch.Generator().manual_seed(s.seed)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": s.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=s.lr, betas=(0.9, 0.95))
    high = len(train_ids) - s.seq_len - 1
    if high < 1:
        raise ValueError(f"corpus of {len(train_ids)} tokens is shorter than one window of {s.seq_len}")
    model.train()
    interval, count, last = 0.0, 0, float("nan")
    for step in range(s.steps):
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, s)
        starts = torch.randint(0, high, (s.batch_size,), generator=gen)
        batch = torch.stack([train_ids[i : i + s.seq_len] for i in starts.tolist()])
        loss = model(input_ids=batch, labels=batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        value = float(loss.detach())
        interval += value
        count += 1
        done = step + 1
        if done % s.log_every == 0 or done == s.steps:
            last = interval / count
            if log_path is not None:
                append_jsonl(log_path, [{"step": done, "train_loss": last, "lr": _lr_at(step, s)}])
            interval, count = 0.0, 0
        if progress:
            progress(done, s.steps, value)
    return last, s.steps * s.batch_size * s.seq_len


def build_base(out: str | Path, train_docs: Sequence[str], eval_docs: Sequence[str], spec: TinySpec,
               settings: PretrainSettings, progress: Progress | None = None) -> PretrainResult:
    """Tokenizer + tiny Llama pretrained on `train_docs`, saved into `out`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sfteval.tinymodel import build_tiny_model

    out = Path(out)
    t0 = time.perf_counter()
    torch.set_num_threads(settings.threads)
    build_tiny_model(out, spec, corpus=train_docs)
    tokenizer = AutoTokenizer.from_pretrained(out)
    train_ids, eval_ids = tokenize(tokenizer, train_docs), tokenize(tokenizer, eval_docs)
    torch.manual_seed(settings.seed)
    model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    loss0 = eval_loss(model, eval_ids, settings.seq_len, settings.eval_windows)
    log = out / "pretrain_log.jsonl"
    log.unlink(missing_ok=True)
    train_loss, seen = train_lm(model, train_ids, settings, log, progress)
    loss1 = eval_loss(model, eval_ids, settings.seq_len, settings.eval_windows)
    model.save_pretrained(out, safe_serialization=True)
    result = PretrainResult(str(out), settings.steps, seen, len(train_ids), train_loss, loss0, loss1,
                            round(time.perf_counter() - t0, 1))
    atomic_write_json(out / "pretrain.json", {"settings": asdict(settings), "spec": asdict(spec), "result": asdict(result)})
    return result


def read_result(model_dir: str | Path) -> PretrainResult | None:
    """The recorded result of a finished pretraining in `model_dir`, else None."""
    path = Path(model_dir) / "pretrain.json"
    if not path.is_file():
        return None
    return PretrainResult(**json.loads(path.read_text(encoding="utf-8"))["result"])
