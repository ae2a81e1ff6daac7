"""vllm vs hf backends on the same benchmark, same prompts and settings, on this machine.

Peer: the `hf` backend (transformers, batch 16, greedy). Ours: the `vllm` backend.
Both run `execute_run` on (a) a GSM8K-style generation benchmark (the real GSM8K test
split from ../shared/data when present, 4-shot) and (b) an MMLU-style choice benchmark
by log-likelihood, 5-shot: --mmlu-items questions made by sfteval.synthetic (MMLU
schema), exemplars from the offline dev file. Reported: each backend's generation/scoring seconds as
the runner records them (`timing.generate_s`), engine start-up separately, the
speedup hf/vllm, and how many outputs agree item by item.

    python perf/vllm_vs_hf.py [--model DIR] [--limit 128] [--max-new-tokens 64] [--mmlu-items 400]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "perf"))


def mmlu_toml(folder: Path, n: int) -> Path:
    import json
    import random

    from sfteval.synthetic import SUBJECTS, mc_question

    data = folder / "mmlu_test.jsonl"
    data.write_text("".join(json.dumps(mc_question(random.Random(10_000 + i), SUBJECTS[i % 3])) + "\n" for i in range(n)))
    path = folder / "perf_mmlu.toml"
    path.write_text(
        f'name = "perf_mmlu"\nkind = "choice"\n[data]\nlocal = "{data}"\n'
        f'fewshot_local = "{ROOT / "sfteval/catalog/data/offline/mmlu_dev.jsonl"}"\n'
        '[prompt]\nnum_fewshot = 5\n[options]\nmode = "loglik"\n'
    )
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, default=128)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--shots", type=int, default=4)
    ap.add_argument("--mmlu-items", type=int, default=400)
    args = ap.parse_args()

    from vllm_overhead import bench_toml

    from sfteval.backends.hf import HFBackend
    from sfteval.backends.vllm import VLLMBackend
    from sfteval.config import EngineSettings, RunConfig
    from sfteval.fileio import read_json, read_jsonl
    from sfteval.runner import execute_run
    from sfteval.tinymodel import build_tiny_model

    tmp = Path(tempfile.mkdtemp(prefix="sfteval-perf-"))
    model = args.model or str(build_tiny_model(tmp / "tiny"))
    toml = bench_toml(tmp, args.shots, args.max_new_tokens)
    engine = EngineSettings(dtype="float32", max_model_len=2048, batch_size=16)
    benches = {"perf_gsm8k": (str(toml), args.limit), "perf_mmlu": (str(mmlu_toml(tmp, args.mmlu_items)), None)}
    names = tuple(benches)
    result = {}
    for label, cls in (("vllm", VLLMBackend), ("hf", HFBackend)):
        t = time.perf_counter()
        b = cls(model, engine)
        start = time.perf_counter() - t
        result[label] = {"start": start, "timing": {}, "rows": {}}
        try:
            for n, (path, limit) in benches.items():
                cfg = RunConfig(checkpoint=model, benchmarks=(path,), chat_template="off", out=str(tmp / label), engine=engine, limit=limit)
                run_dir = execute_run(cfg, backend=b)
                result[label]["timing"][n] = read_json(run_dir / "results.json")["benchmarks"][n]["timing"]["generate_s"]
                result[label]["rows"][n] = read_jsonl(run_dir / "samples" / f"{n}.jsonl")
        finally:
            b.close()
    print(f"{'benchmark':<16}{'n':>5}{'hf s':>10}{'vllm s':>10}{'speedup':>9}{'agree':>9}")
    for n in names:
        h, v = result["hf"]["timing"][n], result["vllm"]["timing"][n]
        key = "output" if n == "perf_gsm8k" else "answer"
        rows_h, rows_v = result["hf"]["rows"][n], result["vllm"]["rows"][n]
        agree = sum(a[key] == b[key] for a, b in zip(rows_h, rows_v))
        print(f"{n:<16}{len(rows_h):>5}{h:>10.2f}{v:>10.2f}{h / v:>8.1f}x{agree:>5}/{len(rows_h)}")
    print(f"engine start-up: hf {result['hf']['start']:.1f} s, vllm {result['vllm']['start']:.1f} s (not in the timings above)")


if __name__ == "__main__":  # vLLM spawns its engine process: the guard is required
    main()
