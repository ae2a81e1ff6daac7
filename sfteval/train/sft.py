"""Supervised fine-tuning on Accelerate: `train(cfg) -> TrainResult`, and the command line.

    python -m sfteval.train --model BASE --data TRAIN [--eval-data VAL] --output OUT [--config NAME|FILE.toml] [--dry-run]
    accelerate launch -m sfteval.train ...   (or the old path: train/sft.py)
      (same flags; --strategy ddp|fsdp|zero2|zero3 through Accelerate: sfteval.train.distributed)
    ACCELERATE_USE_CPU=1 torchrun --nproc_per_node 2 -m sfteval.train ...   (several CPU processes, gloo;
        `accelerate launch --cpu --num_processes N` starts only one process where MPI is absent)

A short loop, no HF Trainer: check every input and encode the data (train.prepare,
train.data), take the output folder for this run (train.outputs), plan batches
deterministically (train.plans, train.batching), run optimizer steps whose loss is normalised over
the whole step (train.loop), log to OUT/train_log.jsonl, and write atomic checkpoints
(train.checkpoint, train.resume). `--resume` continues from the newest complete
checkpoint with the same data order and RNG state, so the result equals an
uninterrupted run.

train_log.jsonl, one line per `logging_steps` optimizer steps (the dashboard reads it):
  run_id, step, epoch, train_loss (mean token loss over the interval), eval_loss (when
  evaluated), lr, grad_norm (before clipping), tokens_per_s (supervised tokens per
  second, all processes), supervised_tokens (in the interval), total_supervised_tokens.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python sfteval/train/sft.py`: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from sfteval.errors import SftevalError  # noqa: E402
from sfteval.fileio import append_jsonl  # noqa: E402
from sfteval.train.config import TrainConfig, parse_args  # noqa: E402
from sfteval.train.prepare import dry_run  # noqa: E402 - the CLI's --dry-run (and its old import path)

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
    run_id: str = ""
    truncated: int = 0
    loop_cpu_seconds: float = 0.0  # the same span in this process's CPU time (steadier than wall time on a shared box)


def train(cfg: TrainConfig) -> TrainResult:  # noqa: C901 - the recipe reads top to bottom
    from accelerate.utils import set_seed
    from tqdm.auto import tqdm

    from sfteval.train import checkpoint as ck
    from sfteval.train import outputs
    from sfteval.train.batching import micro_batch_tensors, step_batches
    from sfteval.train.distributed import (
        check_accumulation,
        deepspeed_source,
        is_deepspeed,
        load_deepspeed_json,
        make_accelerator,
        partial_state,
        resolve_deepspeed_config,
    )
    from sfteval.train.loop import (
        evaluate,
        make_optimizer,
        make_scheduler,
        param_groups,
        train_step,
        warmup_steps,
    )
    from sfteval.train.model import check_qlora, load_model
    from sfteval.train.plans import StepPlans
    from sfteval.train.plans import eval_batches as make_eval_batches
    from sfteval.train.prepare import check_resume, prepare, trained_end_ids, trim_log
    from sfteval.train.resume import load_resume_state, master_file

    cfg = cfg.validate()
    check_accumulation(cfg)  # these two before anything is written
    if cfg.lora.qlora:
        check_qlora()
    out = Path(cfg.output)
    state = partial_state()
    world, rank, main = state.num_processes, state.process_index, state.is_main_process
    p = prepare(cfg, state)
    data, eval_data, tokenizer = p.data, p.eval_data, p.tokenizer
    identity_of = lambda rid: outputs.RunIdentity(rid, p.base, cfg.model_revision, p.template.sha256)  # noqa: E731
    plans = StepPlans([len(s) for s in data.samples], cfg, world)
    total = plans.total(cfg)
    if total < 1 or plans.epoch_steps(0) < 1:
        raise SftevalError(
            f"{len(data.samples)} samples make no full global batch of {cfg.micro_batch_size}x{cfg.grad_accum}x{world}",
            field="micro_batch_size",
        )
    facts = ck.RunFacts(
        base_model=p.base,
        base_revision=cfg.model_revision,
        data_files=ck.describe_files(cfg.data),
        eval_files=ck.describe_files(cfg.eval_data),
        counts={
            "rows": data.rows,
            "samples": len(data.samples),
            "truncated": data.truncated,
            "tokens": data.tokens,
            "supervised_tokens": data.supervised_tokens,
            "eval_samples": len(eval_data.samples) if eval_data else 0,
            "eval_supervised_tokens": eval_data.supervised_tokens if eval_data else 0,
            "world_size": world,
            "total_steps": total,
        },
        dropped=data.dropped,
        config=cfg.to_dict(),
        chat_template_source=p.template.source,
        git_sha=ck.git_sha(),
        packages=ck.package_versions(),
        chat_template_sha256=p.template.sha256,
    )
    ds_raw = load_deepspeed_json(src) if (src := deepspeed_source(cfg)) else None
    ds_conf, built = None, {"optimizer": "trainer (AdamW)", "scheduler": f"trainer ({cfg.schedule})"}
    if ds_raw is not None:  # resolved (or refused) before anything is written
        from transformers import AutoConfig

        hidden = int(getattr(AutoConfig.from_pretrained(p.base, revision=cfg.model_revision), "hidden_size", 0) or 0)
        ds_conf, built = resolve_deepspeed_config(
            ds_raw, cfg, world=world, hidden_size=hidden, total_steps=total, warmup_steps=warmup_steps(cfg, total), where=str(src)
        )
    facts = replace(facts, counts={**facts.counts, "optimizer": built["optimizer"], "scheduler": built["scheduler"]})
    action, run = outputs.setup_output(cfg, out, state, identity_of)
    facts = replace(facts, run_id=run["run_id"])
    if main:
        ck.clean_partial(out)
    state.wait_for_everyone()
    latest = ck.latest_checkpoint(out) if action == "resume" else None
    if latest is not None:
        meta = ck.read_meta(latest)
        check_resume(meta, cfg, facts.data_files, world, latest)
    elif cfg.resume:
        print(f"nothing to resume in {out}: starting from the base model", file=sys.stderr)
        if main:
            trim_log(out / LOG_NAME, 0)  # a run killed before its first checkpoint logged steps that will be redone

    set_seed(cfg.seed)
    model = load_model(cfg, p.base, resume_from=latest, master=master_file(latest, ck.STATE) if latest else None)
    accelerator = make_accelerator(cfg, out, ds_conf)
    ds_sched = ds_conf is not None and "scheduler" in ds_conf
    if ds_conf is not None and "optimizer" in ds_conf:
        from accelerate.utils import DummyOptim

        optimizer = DummyOptim(param_groups(model, cfg.weight_decay), lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        optimizer = make_optimizer(model, cfg)
    if ds_sched:
        from accelerate.utils import DummyScheduler

        scheduler = DummyScheduler(optimizer, total_num_steps=total, warmup_num_steps=warmup_steps(cfg, total))
        model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    else:
        scheduler = make_scheduler(optimizer, cfg, total)
        model, optimizer = accelerator.prepare(model, optimizer)  # our scheduler is stepped by us
    deepspeed = is_deepspeed(accelerator)
    state_scheduler = None if ds_sched else scheduler  # DeepSpeed saves its own
    start, total_before = 0, 0
    if latest is not None:
        load_resume_state(accelerator, model, optimizer, state_scheduler, latest / ck.STATE)
        start = int(meta["step"])
        total_before = int(meta.get("total_supervised_tokens") or 0)
        if main:
            trim_log(out / LOG_NAME, start)
    if cfg.trackers:
        accelerator.init_trackers("sfteval-sft", config={k: str(v) for k, v in cfg.to_dict().items()})
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    trained_ends = trained_end_ids(data.samples, p.template.end_ids)
    eval_batches = make_eval_batches(eval_data.samples, cfg, pad_id, rank, world) if eval_data is not None else None

    model.train()
    bar = tqdm(total=total, initial=start, disable=not (main and cfg.progress), desc="sft", unit="step")
    eval_loss: float | None = None
    last_train_loss: float | None = None
    interval = {"loss": 0.0, "tokens": 0, "seconds": 0.0}
    session_tokens, loop_seconds, loop_cpu = 0, 0.0, 0.0
    epoch_f = 0.0
    last_saved = None
    for step in range(start, total):
        t0, c0 = time.perf_counter(), time.process_time()
        epoch, k, n_in_epoch = plans.locate(step)
        mbs = step_batches(plans.plan(epoch), k, rank=rank, world=world, accum=cfg.grad_accum)
        batches = [micro_batch_tensors(data.samples, mb, pad_id, packed=cfg.packing) for mb in mbs]
        lr = scheduler.get_last_lr()[0]
        loss, n_tok = train_step(accelerator, model, batches)
        if deepspeed:  # the engine clipped and stepped at the end of the last backward
            norm = model.get_global_grad_norm()
        else:
            norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or float("inf"))
        optimizer.step()
        if not ds_sched:
            scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        dt = time.perf_counter() - t0
        session_tokens += n_tok
        interval["loss"] += loss * n_tok
        interval["tokens"] += n_tok
        interval["seconds"] += dt
        epoch_f = epoch + (k + 1) / n_in_epoch
        done = step + 1
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4f}")
        evaluated = eval_batches is not None and ((cfg.eval_steps and done % cfg.eval_steps == 0) or done == total)
        eval_s = eval_cpu = 0.0
        if evaluated:
            t_eval, c_eval = time.perf_counter(), time.process_time()
            eval_loss = evaluate(accelerator, model, eval_batches)
            eval_s, eval_cpu = time.perf_counter() - t_eval, time.process_time() - c_eval
        if done % cfg.logging_steps == 0 or done == total or evaluated:
            last_train_loss = interval["loss"] / max(interval["tokens"], 1)
            row = {
                "run_id": facts.run_id,
                "step": done,
                "epoch": round(epoch_f, 4),
                "train_loss": last_train_loss,
                **({"eval_loss": eval_loss} if evaluated else {}),
                "lr": lr,
                "grad_norm": _as_float(norm),
                "tokens_per_s": interval["tokens"] / max(interval["seconds"], 1e-9),
                "supervised_tokens": interval["tokens"],
                "total_supervised_tokens": total_before + session_tokens,
            }
            if main:
                append_jsonl(out / LOG_NAME, [row])
            if cfg.trackers:
                accelerator.log({k2: v for k2, v in row.items() if k2 not in ("step", "run_id")}, step=done)
            interval = {"loss": 0.0, "tokens": 0, "seconds": 0.0}
        # the step's whole cost but eval and saving: collation, math, progress bar, log line
        loop_seconds += time.perf_counter() - t0 - eval_s
        loop_cpu += time.process_time() - c0 - eval_cpu
        if done == total or (cfg.save_steps and done % cfg.save_steps == 0):
            progress = {
                "step": done,
                "epoch": epoch_f,
                "train_loss": last_train_loss,
                "eval_loss": eval_loss,
                "total_supervised_tokens": total_before + session_tokens,
            }
            last_saved = ck.save_checkpoint(
                accelerator, model, optimizer, state_scheduler, tokenizer, out, step=done, facts=facts,
                progress=progress, eos_ids=trained_ends + sorted(p.template.end_ids), saved_dtype=p.saved_dtype,
            )
            if main:
                outputs.record_checkpoint(out, last_saved.name)
                outputs.rotate(out, cfg.keep_last, facts.run_id, newest=last_saved.name)
            accelerator.wait_for_everyone()
    bar.close()
    if last_saved is None:  # resumed from the final checkpoint: nothing left to do
        last_saved = ck.latest_checkpoint(out)
        meta = ck.read_meta(last_saved)
        epoch_f, last_train_loss, eval_loss = meta["epoch"], meta["train_loss"], meta["eval_loss"]
    merged = outputs.write_merged(accelerator, p, tokenizer, out, last_saved) if cfg.lora.enabled and cfg.lora.save_merged else None
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
        loop_cpu_seconds=loop_cpu,
        tokens_per_s=session_tokens / loop_seconds if loop_seconds else 0.0,
        dropped=dict(data.dropped),
        merged_dir=merged,
        run_id=facts.run_id,
        truncated=data.truncated,
    )


def _as_float(norm: Any) -> float | None:
    if norm is None:
        return None
    if hasattr(norm, "full_tensor"):  # FSDP2 returns a DTensor
        norm = norm.full_tensor()
    return float(norm)


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, ns = parse_args(argv)
        if ns.dry_run:
            print(dry_run(cfg, color=sys.stdout.isatty()))
            return 0
        result = train(cfg)
    except SftevalError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"done: {result.steps} steps, train_loss={result.train_loss}, eval_loss={result.eval_loss}, checkpoint {result.final_checkpoint}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
