"""How fast does the Samples page open a 10,000-sample run pair? Target: under 2 s.

    python perf/dashboard_samples.py [--n 10000] [--repeat 3]

Writes two run folders (base and tuned, N samples each, 8-shot GSM8K-style prompts of
realistic length: real GSM8K items from ../shared/data when present, else synthetic
ones) and measures, in one process:

  page, cold   AppTest: open the Samples page with empty caches (parse, pair, sort,
               render the table and the first page of items)
  page, warm   the same page rerun with the caches filled (what every click costs)
  search       filter_pairs() text search over all text columns
  peer: json   json.loads of every line of both files (the floor: just reading them)
  peer: pandas pandas.read_json(lines=True) of both files (the obvious loader)

and prints each time with its ratio to the json peer. Timings are the minimum over
--repeat rounds (the machine is shared; the minimum is the least disturbed).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "sfteval" / "dashboard"))
GSM8K = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"


def _items(n: int) -> list[dict[str, str]]:
    if GSM8K.is_file():
        rows = [json.loads(line) for line in GSM8K.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        from sfteval.synthetic import word_problem

        rng0 = random.Random(0)
        rows = [word_problem(rng0) for _ in range(200)]
    return [rows[i % len(rows)] for i in range(n)]


def write_pair(out: Path, n: int) -> tuple[Path, Path, str]:
    items = _items(n)
    shots = "".join(f"Question: {r['question']}\nAnswer: {r['answer']}\n\n" for r in items[:8])
    rng = random.Random(0)
    dirs = []
    for label, p_right in (("base", 0.45), ("tuned", 0.55)):
        run = out / "runs" / f"{label}-perf0000"
        (run / "samples").mkdir(parents=True)
        lines = []
        for i, r in enumerate(items):
            ref = r["answer"].rsplit("####", 1)[-1].strip()
            right = rng.random() < p_right
            answer = ref if right else str(int(ref.replace(",", "") or 0) + 1)
            prompt = f"{shots}Question: {r['question']}\nAnswer:"
            lines.append(json.dumps({
                "id": str(i), "prompt": prompt, "prompt_hash": "0" * 64,
                "output": f" {r['answer'].rsplit('####', 1)[0]}#### {answer}", "finish_reason": "stop",
                "answer": answer, "reference": ref,
                "scores": {"exact_match_strict": float(right), "exact_match_flexible": float(right)},
                "meta": {"num_tokens": 120}}))
        (run / "samples" / "gsm8k.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
        est = {"value": p_right, "stderr": 0.005, "ci95": [p_right - 0.01, p_right + 0.01], "n": n, "method": "wilson"}
        results = {"schema": "sfteval.run/1", "run_id": run.name, "label": label, "created": f"2026-11-23T17:0{len(dirs)}:00Z",
                   "model": {"path": f"/ckpt/{label}", "kind": "checkpoint"},
                   "benchmarks": {"gsm8k": {"kind": "math", "n": n, "primary_metric": "exact_match_strict",
                                            "metrics": {"exact_match_strict": est, "exact_match_flexible": est},
                                            "samples_file": "samples/gsm8k.jsonl"}}}
        (run / "results.json").write_text(json.dumps(results), encoding="utf-8")
        dirs.append(run)
    return dirs[0], dirs[1], "gsm8k"


def _timed(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process). CPU time is what the page costs
    whatever else the machine is doing; wall time is what a user waits."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import os

    import pandas as pd
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from data import filter_pairs, pair_samples  # dashboard/data.py

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        base, tuned, bench = write_pair(out, args.n)
        size_mb = sum((d / "samples" / f"{bench}.jsonl").stat().st_size for d in (base, tuned)) / 1e6
        os.environ["SFTEVAL_REPORTS"] = str(out)
        os.environ["SFTEVAL_RATINGS_DB"] = str(out / "ratings.sqlite3")
        files = [d / "samples" / f"{bench}.jsonl" for d in (base, tuned)]

        def peer_json() -> None:
            for f in files:
                with f.open(encoding="utf-8") as fh:
                    [json.loads(line) for line in fh]

        def peer_pandas() -> None:
            for f in files:
                pd.read_json(f, lines=True)

        cold, warm, rows = [], [], 0
        for _ in range(args.repeat):
            st.cache_data.clear()
            st.cache_resource.clear()
            at = AppTest.from_file(str(ROOT / "sfteval" / "dashboard" / "app.py"), default_timeout=120)
            at.run()
            at.switch_page("views/samples.py")
            cold.append(_timed(at.run))
            if at.exception:
                raise SystemExit(f"the page failed: {at.exception[0].value}")
            rows = len(at.dataframe[0].value)
            warm.append(_timed(at.run))
        df = pair_samples(base, tuned, bench, "exact_match_strict")
        first_search = _timed(lambda: filter_pairs(df, text="clips"))  # builds the search index
        search = min(_timed(lambda: filter_pairs(df, text="natalia")) for _ in range(args.repeat))
        pj = min(_timed(peer_json) for _ in range(args.repeat))
        pp = min(_timed(peer_pandas) for _ in range(args.repeat))

    assert rows == args.n, f"the page listed {rows} rows, expected {args.n}"
    table = [("page, cold (AppTest)", min(cold)), ("page, warm rerun", min(warm)),
             ("first text search (+index)", first_search), ("later text search", search),
             ("peer: json.loads both files", pj), ("peer: pandas.read_json both", pp)]
    load = os.getloadavg()[0]
    print(f"Samples page, {args.n} samples x 2 runs ({size_mb:.0f} MB of JSONL; "
          f"{'real GSM8K' if GSM8K.is_file() else 'synthetic'} 8-shot prompts); min of {args.repeat}; "
          f"{os.cpu_count()} CPUs, load average {load:.1f}")
    print(f"{'what':30} {'wall s':>8} {'cpu s':>8} {'wall / json peer':>17}")
    for name, (wall, cpu) in table:
        print(f"{name:30} {wall:8.3f} {cpu:8.3f} {wall / pj[0]:17.2f}")
    wall, cpu = min(cold)
    print(f"target: cold open < 2 s -> wall {wall:.2f} s {'PASS' if wall < 2 else 'FAIL'}, "
          f"cpu {cpu:.2f} s {'PASS' if cpu < 2 else 'FAIL'}"
          + (" (wall is inflated: the machine is busier than its cores)" if load > (os.cpu_count() or 1) else ""))

if __name__ == "__main__":
    main()
