"""Trainer throughput: supervised tokens/s of train.sft against named peers, same run.

    python perf/train_throughput.py [--tiny-steps 20] [--mid-steps 6] [--samples 400] [--skip-trl] [--rounds 2]
    python perf/train_throughput.py --only mid --mid-steps 6 --variants bare,ours,trl --rounds 2   (~14 min at load 3-10)
    python perf/train_throughput.py --tokenize 20000 [--workers 2]   (tokenization cache: warm vs cold)

Peers, each in its own cold subprocess (so peak RSS is its own), same model, data,
global batch (micro 4 x accum 2), steps, lr schedule, fp32 on the CPU:
- `bare`: a plain PyTorch loop doing the same math (sum of supervised token losses /
  supervised tokens per optimizer step, AdamW, clipping, cosine) on the SAME batches
  (train.batching's length-grouped plan): the practical ceiling. Goal: ours >= 0.9x.
- `trl`: TRL 1.16 `SFTTrainer` (completion-only loss, its own collator, loss, logging
  every step) fed our encoded samples (ids + loss mask as `completion_mask`) in our plan's
  order, read sequentially: the SAME micro-batches, so bare, ours and TRL train on the
  same supervised tokens, counted exactly (the table refuses to print ratios otherwise).
  Goal: ours >= 1.2x.
- `ours`, `ours-nogroup` (padding in random order), `ours-packed` (packing to
  cutoff_len): packing vs padding. Goal: 1.5x on variable-length data, so the pair is
  also run on a long-tailed mix (`mix-padding`, `mix-packed`: every other GSM8K answer
  cut to its final line).

Models: the tiny test model (0.4M parameters, per-step overhead dominates) and a
~29M-parameter Llama (hidden 512, 8 layers) where matrix work dominates. Data: the real
GSM8K train split from ../shared/data when present (never committed), else synthetic
variable-length sums. Each run uses one intra-op thread (PERF_THREADS to change it).
Times are the optimizer-step loop only (no load, tokenization or
saving), in wall time and in the child's CPU time; `child` columns are the whole
subprocess. Two CPU cores shared with other users' jobs: the load moves during a run, so
`--rounds N` alternates the order (A B C, C B A) and the ratios sum the rounds; with one
thread a run, the CPU-time ratio is the work done and the wall-time ratio adds the load.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
GSM8K = REPO.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
MICRO, ACCUM, LR, CUTOFF = 4, 2, 1e-4, 512


def write_data(path: Path, n: int, *, mix: bool = False) -> str:
    """GSM8K rows (or synthetic ones); `mix` gives every other row only its final answer
    line, a long-tailed length mix like real SFT sets (short answers beside worked ones)."""
    rows = []
    if GSM8K.is_file():
        with GSM8K.open() as f:
            for line, _ in zip(f, range(n)):
                r = json.loads(line)
                rows.append({"instruction": r["question"], "output": r["answer"]})
        source = f"GSM8K train (first {len(rows)})"
    else:
        rng = random.Random(0)
        for i in range(n):
            a, b = rng.randint(1, 999), rng.randint(1, 999)
            rows.append({"instruction": f"Add {a} and {b}. " * rng.randint(1, 6), "output": f"{a} + {b} = {a + b}. " * rng.randint(1, 12)})
        source = f"synthetic ({n})"
    if mix:
        for r in rows[::2]:
            r["output"] = r["output"].strip().splitlines()[-1]
        source += ", every other answer cut to its last line"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return source


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU of this process and its finished children (tokenization workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def tokenize_bench(work: Path, n: int, workers: int) -> str:
    """Cold (empty cache, `workers` processes) vs warm (same key: read the cache) tokenization of n conversations."""
    from transformers import AutoTokenizer

    from sfteval.tinymodel import build_tiny_model
    from sfteval.train.data import end_token_ids
    from sfteval.train.tokencache import encode_files

    rows, base = [], []
    if GSM8K.is_file():
        base = [json.loads(x) for x in GSM8K.read_text().splitlines()]
    rng = random.Random(0)
    for i in range(n):  # two-turn conversations from two GSM8K problems (or synthetic sums)
        turns = []
        for _ in range(2):
            if base:
                r = base[rng.randrange(len(base))]
                q, a = r["question"], r["answer"]
            else:
                x, y = rng.randint(1, 999), rng.randint(1, 999)
                q, a = f"Add {x} and {y}. " * rng.randint(1, 6), f"{x} + {y} = {x + y}. " * rng.randint(1, 12)
            turns += [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        rows.append({"id": str(i), "messages": turns})
    data = work / "conversations.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = AutoTokenizer.from_pretrained(build_tiny_model(work / "tok-model"))
    kw = dict(fmt="auto", on_bad="error", cutoff_len=1024, end_ids=end_token_ids(tok), last_turn_only=False, cache_dir=str(work / "cache"))
    out = []
    for label, w in (("cold, 1 process", 1), (f"cold, {workers} processes", workers), ("warm cache", workers)):
        if label.startswith("cold"):
            shutil.rmtree(work / "cache", ignore_errors=True)
        c0, t0 = cpu_seconds(), time.perf_counter()
        enc = encode_files([str(data)], tok, workers=w, **kw)
        out.append((label, time.perf_counter() - t0, cpu_seconds() - c0, enc.tokens))
    lines = [f"\n## Tokenization of {n} two-turn conversations ({out[0][3]} tokens, tiny tokenizer)", "",
             "| run | wall s | CPU s (incl. workers) |", "|---|---:|---:|"]
    lines += [f"| {label} | {wall:.2f} | {cpu:.2f} |" for label, wall, cpu, _ in out]
    lines += ["", f"| warm / cold ({workers} processes) | {out[1][1] / out[2][1]:.1f}x faster (goal >= 10x) |",
              f"| warm / cold (1 process) | {out[0][1] / out[2][1]:.1f}x faster |",
              f"| {workers} processes / 1 process, cold | {out[0][1] / out[1][1]:.2f}x |"]
    return "\n".join(lines)


# --- children -------------------------------------------------------------------------


def child_ours(model: str, data: str, steps: int, variant: str) -> dict:
    from sfteval.train.config import TrainConfig
    from sfteval.train.sft import train

    with tempfile.TemporaryDirectory() as out:
        res = train(
            TrainConfig(
                model=model, data=(data,), output=out, max_steps=steps, micro_batch_size=MICRO, grad_accum=ACCUM,
                lr=LR, cutoff_len=CUTOFF, packing=variant == "ours-packed", group_by_length=variant == "ours",
                progress=False, keep_last=1, cache_dir="none",
            )
        )
    return {"tokens": res.supervised_tokens, "seconds": res.loop_seconds, "cpu_loop": res.loop_cpu_seconds}


def child_bare(model: str, data: str, steps: int) -> dict:
    import math

    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from sfteval.train.batching import micro_batch_tensors, plan_epoch, step_batches
    from sfteval.train.data import end_token_ids, prepare_tokenizer
    from sfteval.train.tokencache import load_encoded

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model)
    prepare_tokenizer(tok)
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    enc = load_encoded([data], tok, cutoff_len=CUTOFF, end_ids=end_token_ids(tok))
    plan = plan_epoch([len(s) for s in enc.samples], micro_batch_size=MICRO, seed=0, epoch=0, group_by_length=True)
    assert len(plan) >= steps * ACCUM, "not enough data for one epoch of these steps"
    opt = torch.optim.AdamW(net.parameters(), lr=LR)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    tokens = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for step in range(steps):
        batches = [micro_batch_tensors(enc.samples, mb, tok.pad_token_id, packed=False) for mb in step_batches(plan, step, rank=0, world=1, accum=ACCUM)]
        n = sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches)
        for b in batches:
            logits = net(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=False).logits
            labels = b["labels"][:, 1:]
            keep = labels != -100
            loss = F.cross_entropy(logits[:, :-1][keep].float(), labels[keep], reduction="sum") / n
            loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        tokens += n
    return {"tokens": tokens, "seconds": time.perf_counter() - t0, "cpu_loop": time.process_time() - c0}


def child_trl(model: str, data: str, steps: int) -> dict:
    """TRL's SFTTrainer on the SAME micro-batches as `bare` and `ours`: our encoded samples
    (ids + the loss mask as `completion_mask`, so TRL builds the same labels) laid out in
    the order of our length-grouped plan, read sequentially. So the three train on the
    same supervised tokens, counted exactly; TRL does its own collation, loss and logging."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from sfteval.train.batching import plan_epoch, step_batches
    from sfteval.train.data import end_token_ids, prepare_tokenizer
    from sfteval.train.tokencache import load_encoded

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(model)
    prepare_tokenizer(tok)
    enc = load_encoded([data], tok, cutoff_len=CUTOFF, end_ids=end_token_ids(tok))
    plan = plan_epoch([len(s) for s in enc.samples], micro_batch_size=MICRO, seed=0, epoch=0, group_by_length=True)
    order = [row[0] for step in range(steps) for mb in step_batches(plan, step, rank=0, world=1, accum=ACCUM) for row in mb]
    rows = [{"input_ids": enc.samples[i].input_ids.tolist(), "completion_mask": enc.samples[i].mask.astype(int).tolist()} for i in order]
    tokens = sum(int(enc.samples[i].mask[1:].sum()) for i in order)
    net = AutoModelForCausalLM.from_pretrained(model, dtype=torch.float32)
    with tempfile.TemporaryDirectory() as out:
        args = SFTConfig(
            output_dir=out, per_device_train_batch_size=MICRO, gradient_accumulation_steps=ACCUM, max_steps=steps,
            learning_rate=LR, lr_scheduler_type="cosine", max_grad_norm=1.0, logging_steps=1, save_strategy="no",
            report_to="none", max_length=CUTOFF, packing=False, completion_only_loss=True, use_cpu=True, seed=0,
            disable_tqdm=True, dataloader_num_workers=0, bf16=False, fp16=False, train_sampling_strategy="sequential",
        )
        trainer = SFTTrainer(model=net, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
        labels = trainer.train_dataset["labels"]
        assert sum(sum(1 for x in lab[1:] if x != -100) for lab in labels) == tokens, "TRL built other labels"
        t0, c0 = time.perf_counter(), time.process_time()
        trainer.train()
        seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"tokens": tokens, "seconds": seconds, "cpu_loop": cpu}


def run_child(args: argparse.Namespace) -> None:
    if args.child == "bare":
        out = child_bare(args.model, args.data, args.steps)
    elif args.child == "trl":
        out = child_trl(args.model, args.data, args.steps)
    else:
        out = child_ours(args.model, args.data, args.steps, args.child)
    out["peak_rss_mb"] = peak_rss_mb()
    out["cpu_s"] = cpu_seconds()
    print("RESULT " + json.dumps(out), flush=True)


# --- parent ---------------------------------------------------------------------------


def measure(variant: str, model: Path, data: Path, steps: int) -> dict:
    child = {"mix-padding": "ours-nogroup", "mix-packed": "ours-packed"}.get(variant, variant)
    if variant.startswith("mix-"):
        data = data.with_name("mix.jsonl")
    cmd = [sys.executable, __file__, "--child", child, "--model", str(model), "--data", str(data), "--steps", str(steps)]
    # One intra-op thread each: on a shared 2-core machine two OpenMP threads spin against
    # other users' processes and run 5x slower (measured), which would swamp the ratios.
    threads = os.environ.get("PERF_THREADS", "1")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    wall = time.perf_counter() - t0
    line = next((x for x in done.stdout.splitlines() if x.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-3000:]}")
    out = json.loads(line[len("RESULT "):])
    out["wall"] = wall
    out["load"] = (load0, os.getloadavg()[0])
    out["tok_s"] = out["tokens"] / out["seconds"]
    out["tok_cpu_s"] = out["tokens"] / out["cpu_loop"]
    return out


def table(name: str, params: int, steps: int, runs: list[tuple[str, dict]]) -> str:
    """One row per child run, then each ratio on the summed runs of a variant, by loop wall
    time and by loop CPU time (one thread each, so CPU time is the work done, while wall
    time also holds whatever else the shared machine was running)."""
    lines = [f"\n## {name} ({params / 1e6:.1f}M parameters), {steps} steps, global batch {MICRO * ACCUM}", "",
             "| run | sup. tokens | sup. tokens/s (wall) | per CPU s | loop wall s | loop CPU s | child wall s | child CPU s | load start-end | peak RSS MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    res: dict[str, list[dict]] = {}
    for v, r in runs:
        res.setdefault(v, []).append(r)
        load = "-".join(f"{x:.1f}" for x in r["load"])
        lines.append(f"| {v} #{len(res[v])} | {r['tokens']} | {r['tok_s']:.0f} | {r['tok_cpu_s']:.0f} | {r['seconds']:.1f} | {r['cpu_loop']:.1f} "
                     f"| {r['wall']:.1f} | {r.get('cpu_s', 0):.1f} | {load} | {r['peak_rss_mb']:.0f} |")
    same = {r["tokens"] for v in ("bare", "ours", "trl") for r in res.get(v, [])}
    if len(same) > 1:  # the ratios compare the same work or nothing
        raise SystemExit(f"bare/ours/trl trained on different supervised token counts: {same}")

    def rate(v: str, key: str) -> float:
        return sum(r["tokens"] for r in res[v]) / sum(r[key] for r in res[v])

    ratios = [("ours / bare loop (goal >= 0.9)", "ours", "bare"), ("ours / TRL SFTTrainer (goal >= 1.2)", "ours", "trl"),
              ("ours without length grouping / TRL", "ours-nogroup", "trl"),
              ("packing / padding in random order (goal >= 1.5)", "ours-packed", "ours-nogroup"),
              ("packing / padding length-grouped", "ours-packed", "ours"),
              ("long-tailed mix: packing / padding in random order (goal >= 1.5)", "mix-packed", "mix-padding")]
    lines += ["", "| ratio (supervised tokens per second, runs summed) | wall | CPU |", "|---|---:|---:|"]
    for label, a, b in ratios:
        if a in res and b in res:
            lines.append(f"| {label} | {rate(a, 'seconds') / rate(b, 'seconds'):.2f}x | {rate(a, 'cpu_loop') / rate(b, 'cpu_loop'):.2f}x |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child")
    p.add_argument("--model")
    p.add_argument("--data")
    p.add_argument("--steps", type=int, default=0)
    p.add_argument("--tiny-steps", type=int, default=20)
    p.add_argument("--mid-steps", type=int, default=6)
    p.add_argument("--samples", type=int, default=400)
    p.add_argument("--skip-trl", action="store_true")
    p.add_argument("--rounds", type=int, default=1, help="run the variants this many times, alternating the order")
    p.add_argument("--only", choices=["tiny", "mid"])
    p.add_argument("--variants", default="bare,ours,ours-nogroup,ours-packed,trl,mix-padding,mix-packed")
    p.add_argument("--tokenize", type=int, default=0, help="only the tokenization-cache benchmark on N conversations (e.g. 20000)")
    p.add_argument("--workers", type=int, default=2, help="tokenization processes for --tokenize")
    args = p.parse_args()
    if args.child:
        return run_child(args)
    if args.tokenize:
        work = Path(tempfile.mkdtemp(prefix="sfteval-perf-tok-"))
        print(f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; work dir {work}")
        print(tokenize_bench(work, args.tokenize, args.workers), flush=True)
        return None

    from sfteval.tinymodel import TinySpec, build_tiny_model

    work = Path(tempfile.mkdtemp(prefix="sfteval-perf-train-"))
    source = write_data(work / "train.jsonl", args.samples)
    write_data(work / "mix.jsonl", args.samples, mix=True)
    print(f"data: {source}; fp32 CPU, {os.environ.get('PERF_THREADS', '1')} thread per run ({os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}); work dir {work}")
    specs = {"tiny": (TinySpec(), args.tiny_steps),
             "mid": (TinySpec(vocab_size=8192, hidden_size=512, num_layers=8, num_heads=8, intermediate_size=1376), args.mid_steps)}
    variants = [v for v in args.variants.split(",") if not (args.skip_trl and v == "trl")]
    for name, (spec, steps) in specs.items():
        if args.only and name != args.only:
            continue
        model = build_tiny_model(work / name, spec)
        from safetensors import safe_open

        with safe_open(str(model / "model.safetensors"), "pt") as f:
            params = sum(_prod(f.get_slice(k).get_shape()) for k in f.keys())
        # rounds alternate the order (A B C, C B A, ...) so a load that drifts during the
        # run weighs on every variant alike
        order = [v for k in range(args.rounds) for v in (variants if k % 2 == 0 else variants[::-1])]
        runs = []
        for v in order:
            r = measure(v, model, work / "train.jsonl", steps)
            runs.append((v, r))
            print(f"  {name} {v}: {r['tok_s']:.0f} supervised tokens/s, {r['tok_cpu_s']:.0f} per CPU second (load {r['load'][0]:.1f})", flush=True)
        print(table(name, params, steps, runs), flush=True)


def _prod(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


if __name__ == "__main__":
    main()
