"""Supervised fine-tuning on Accelerate: `train(cfg) -> TrainResult`, and the command line.

    python -m sfteval.train --model BASE --data TRAIN [--eval-data VAL] --output OUT [--config FILE.toml]
    accelerate launch -m sfteval.train ...   (or the old path: train/sft.py)
      (same flags; DDP / FSDP / DeepSpeed are Accelerate's job)
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m sfteval.train ...   (several CPU processes, gloo;
        `accelerate launch --cpu --num_processes N` starts only one process where MPI is absent)

A short loop, no HF Trainer: load and mask the data (train.data), plan batches
deterministically (train.batching), run optimizer steps whose loss is normalised over
the whole step (train.loop), log to OUT/train_log.jsonl, and write atomic checkpoints
(train.checkpoint). `--resume` continues from the newest complete checkpoint with the
same data order and RNG state, so the result equals an uninterrupted run.

train_log.jsonl, one line per `logging_steps` optimizer steps (the dashboard reads it):
  step, epoch, train_loss (mean token loss over the interval), eval_loss (when
  evaluated), lr, grad_norm (before clipping), tokens_per_s (supervised tokens per
  second, all processes), supervised_tokens (in the interval), total_supervised_tokens.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python sfteval/train/sft.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sfteval.errors import SftevalError  # noqa: E402
from sfteval.fileio import append_jsonl, atomic_write_text  # noqa: E402
from sfteval.train.config import TrainConfig, config_from_args  # noqa: E402

LOG_NAME = "train_log.jsonl"


@dataclass(frozen=True)
class TrainResult:
    output_dir: str
    final_checkpoint: str
    steps: int
    epoch: float
    train_loss: float | None  # mean token loss of the last logging interval
    eval_loss: float | None
    samples: int
    supervised_tokens: int  # trained by this call (not counting steps before a resume)
    loop_seconds: float  # optimizer steps only: no loading, eval or saving
    tokens_per_s: float
    dropped: dict[str, int] = field(default_factory=dict)
    merged_dir: str | None = None


def load_model(cfg: TrainConfig) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model, revision=cfg.model_revision, dtype=torch.float32)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        from peft import LoraConfig, get_peft_model

        if cfg.gradient_checkpointing:
            model.enable_input_require_grads()
        targets = "all-linear" if cfg.lora.target_modules == ("all-linear",) else list(cfg.lora.target_modules)
        lora = LoraConfig(
            r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
        )
        model = get_peft_model(model, lora)
    return model


class _Plans:
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


def _eval_batches(samples: Any, cfg: TrainConfig, pad_id: int, rank: int, world: int) -> list[dict[str, Any]]:
    from sfteval.train.batching import collate

    order = sorted(range(len(samples)), key=lambda i: len(samples[i]))
    chunks = [order[k : k + cfg.micro_batch_size] for k in range(0, len(order), cfg.micro_batch_size)]
    return [collate([[samples[i]] for i in c], pad_id, packed=False) for c in chunks[rank::world]]


# Settings that decide which samples form step k: a resume must not change them.
_BATCH_KNOBS = ("micro_batch_size", "grad_accum", "seed", "packing", "group_by_length", "cutoff_len", "last_turn_only")


def _check_same_batches(meta: dict[str, Any], cfg: TrainConfig, world: int, where: Path) -> None:
    old = meta.get("config", {})
    changed = [k for k in _BATCH_KNOBS if k in old and old[k] != getattr(cfg, k)]
    if meta.get("counts", {}).get("world_size", world) != world:
        changed.append("number of processes")
    if changed:
        raise SftevalError(
            f"cannot resume with different {', '.join(changed)}: the batches after step {meta.get('step')} would differ",
            path=str(where),
            hint="resume with the settings of the checkpoint, or start a new --output",
        )


def _trim_log(path: Path, upto_step: int) -> None:
    """On resume, drop log lines past the checkpoint (the crashed run's tail)."""
    import json

    if not path.is_file():
        return
    keep = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(raw).get("step", 0) <= upto_step:
                keep.append(raw + "\n")
        except json.JSONDecodeError:
            continue  # a torn last line
    atomic_write_text(path, "".join(keep))


def train(cfg: TrainConfig) -> TrainResult:  # noqa: C901 - the recipe reads top to bottom
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm
    from transformers import AutoTokenizer

    from sfteval.train import checkpoint as ck
    from sfteval.train.batching import micro_batch_tensors, step_batches
    from sfteval.train.data import end_token_ids, load_encoded, prepare_tokenizer
    from sfteval.train.loop import evaluate, make_optimizer, make_scheduler, train_step

    from accelerate.state import AcceleratorState

    cfg = cfg.validate()
    out = Path(cfg.output)
    AcceleratorState._reset_state()  # a second in-process run may use another precision
    accelerator = Accelerator(
        mixed_precision="bf16" if cfg.precision == "bf16" else "no",
        log_with=list(cfg.trackers) or None,
        project_dir=str(out),
    )
    main = accelerator.is_main_process
    set_seed(cfg.seed)
    tokenizer = AutoTokenizer.from_pretrained(cfg.model, revision=cfg.model_revision)
    template_source = prepare_tokenizer(tokenizer)
    model = load_model(cfg)
    gen_eos = getattr(model.generation_config, "eos_token_id", None)
    end_ids = end_token_ids(tokenizer, [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or []))
    enc = dict(fmt=cfg.format, on_bad=cfg.on_bad, cutoff_len=cfg.cutoff_len, end_ids=end_ids, last_turn_only=cfg.last_turn_only)
    data = load_encoded(cfg.data, tokenizer, **enc)
    eval_data = load_encoded(cfg.eval_data, tokenizer, **enc) if cfg.eval_data else None
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trained_ends = sorted({s.input_ids[i] for s in data.samples for i in range(len(s)) if s.mask[i] and s.input_ids[i] in end_ids})

    world, rank = accelerator.num_processes, accelerator.process_index
    plans = _Plans([len(s) for s in data.samples], cfg, world)
    total = plans.total(cfg)
    if total < 1 or plans.epoch_steps(0) < 1:
        raise SftevalError(
            f"{len(data.samples)} samples make no full global batch of {cfg.micro_batch_size}x{cfg.grad_accum}x{world}",
            field="micro_batch_size",
        )
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total)
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)  # stepped by us once per optimizer step

    facts = ck.RunFacts(
        base_model=cfg.model,
        base_revision=cfg.model_revision,
        data_files=ck.describe_files(cfg.data),
        eval_files=ck.describe_files(cfg.eval_data),
        counts={
            "rows": data.rows,
            "samples": len(data.samples),
            "tokens": data.tokens,
            "supervised_tokens": data.supervised_tokens,
            "eval_samples": len(eval_data.samples) if eval_data else 0,
            "eval_supervised_tokens": eval_data.supervised_tokens if eval_data else 0,
            "world_size": world,
            "total_steps": total,
        },
        dropped=data.dropped,
        config=cfg.to_dict(),
        chat_template_source=template_source,
        git_sha=ck.git_sha(),
        packages=ck.package_versions(),
    )
    start, total_before = 0, 0
    if main:
        out.mkdir(parents=True, exist_ok=True)
        ck.clean_partial(out)
    accelerator.wait_for_everyone()
    if cfg.resume and (latest := ck.latest_checkpoint(out)) is not None:
        meta = ck.read_meta(latest)
        old = [f["sha256"] for f in meta.get("data_files", [])]
        if old != [f["sha256"] for f in facts.data_files]:
            raise SftevalError("the training data changed since this checkpoint", path=str(latest), hint="resume with the same --data")
        _check_same_batches(meta, cfg, world, latest)
        accelerator.load_state(str(latest / ck.STATE))
        start = int(meta["step"])
        total_before = int(meta.get("total_supervised_tokens") or 0)
        if main:
            _trim_log(out / LOG_NAME, start)
    elif main:
        (out / LOG_NAME).unlink(missing_ok=True)  # a fresh run starts a fresh log
    if cfg.trackers:
        accelerator.init_trackers("sfteval-sft", config={k: str(v) for k, v in cfg.to_dict().items()})

    def eval_now() -> float | None:
        if eval_data is None:
            return None
        return evaluate(accelerator, model, _eval_batches(eval_data.samples, cfg, pad_id, rank, world))

    model.train()
    bar = tqdm(total=total, initial=start, disable=not (main and cfg.progress), desc="sft", unit="step")
    eval_loss: float | None = None
    last_train_loss: float | None = None
    interval = {"loss": 0.0, "tokens": 0, "seconds": 0.0}
    session_tokens, loop_seconds = 0, 0.0
    epoch_f = 0.0
    last_saved = None
    for step in range(start, total):
        t0 = time.perf_counter()
        epoch, k, n_in_epoch = plans.locate(step)
        mbs = step_batches(plans.plan(epoch), k, rank=rank, world=world, accum=cfg.grad_accum)
        batches = [micro_batch_tensors(data.samples, mb, pad_id, packed=cfg.packing) for mb in mbs]
        loss, n_tok = train_step(accelerator, model, batches)
        norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        loop_seconds += dt
        session_tokens += n_tok
        interval["loss"] += loss * n_tok
        interval["tokens"] += n_tok
        interval["seconds"] += dt
        epoch_f = epoch + (k + 1) / n_in_epoch
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        evaluated = eval_data is not None and ((cfg.eval_steps and done % cfg.eval_steps == 0) or done == total)
        if evaluated:
            eval_loss = eval_now()
        if done % cfg.logging_steps == 0 or done == total or evaluated:
            last_train_loss = interval["loss"] / max(interval["tokens"], 1)
            row = {
                "step": done,
                "epoch": round(epoch_f, 4),
                "train_loss": last_train_loss,
                **({"eval_loss": eval_loss} if evaluated else {}),
                "lr": lr,
                "grad_norm": float(norm),
                "tokens_per_s": interval["tokens"] / max(interval["seconds"], 1e-9),
                "supervised_tokens": interval["tokens"],
                "total_supervised_tokens": total_before + session_tokens,
            }
            if main:
                append_jsonl(out / LOG_NAME, [row])
            if cfg.trackers:
                accelerator.log({k2: v for k2, v in row.items() if k2 != "step"}, step=done)
            interval = {"loss": 0.0, "tokens": 0, "seconds": 0.0}
        if done == total or (cfg.save_steps and done % cfg.save_steps == 0):
            progress = {
                "step": done,
                "epoch": epoch_f,
                "train_loss": last_train_loss,
                "eval_loss": eval_loss,
                "total_supervised_tokens": total_before + session_tokens,
            }
            last_saved = ck.save_checkpoint(
                accelerator, model, tokenizer, out, step=done, facts=facts, progress=progress, eos_ids=trained_ends + sorted(end_ids)
            )
            if main:
                ck.rotate(out, cfg.keep_last)
            accelerator.wait_for_everyone()
    bar.close()
    if last_saved is None:  # resumed from the final checkpoint: nothing left to do
        last_saved = ck.latest_checkpoint(out)
        meta = ck.read_meta(last_saved)
        epoch_f, last_train_loss, eval_loss = meta["epoch"], meta["train_loss"], meta["eval_loss"]
    merged = _save_merged(accelerator, model, tokenizer, out, last_saved) if cfg.lora.enabled and cfg.lora.save_merged else None
    if cfg.trackers:
        accelerator.end_training()
    return TrainResult(
        output_dir=str(out),
        final_checkpoint=str(last_saved),
        steps=total,
        epoch=epoch_f,
        train_loss=last_train_loss,
        eval_loss=eval_loss,
        samples=len(data.samples),
        supervised_tokens=session_tokens,
        loop_seconds=loop_seconds,
        tokens_per_s=session_tokens / loop_seconds if loop_seconds else 0.0,
        dropped=dict(data.dropped),
        merged_dir=merged,
    )


def _save_merged(accelerator: Any, model: Any, tokenizer: Any, out: Path, ckpt: Path) -> str | None:
    """OUT/merged/: LoRA folded into the base weights, a plain model folder (atomic)."""
    import json
    import shutil

    from sfteval.fileio import atomic_write_json

    if accelerator.is_main_process:
        tmp, final = out / ".tmp-merged", out / "merged"
        shutil.rmtree(tmp, ignore_errors=True)
        merged = accelerator.unwrap_model(model).merge_and_unload()
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        shutil.copy(ckpt / "generation_config.json", tmp / "generation_config.json")
        meta = json.loads((ckpt / "sfteval.json").read_text(encoding="utf-8"))
        atomic_write_json(tmp / "sfteval.json", {**meta, "adapter": False, "merged_from": str(ckpt)})
        shutil.rmtree(final, ignore_errors=True)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return str(out / "merged")


def main(argv: list[str] | None = None) -> int:
    try:
        result = train(config_from_args(argv))
    except SftevalError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"done: {result.steps} steps, train_loss={result.train_loss}, eval_loss={result.eval_loss}, checkpoint {result.final_checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
