"""Calibration tables of `sfteval gate` (docs/ci-gate.md), by simulation.

For n = 200, 500, 1,319 (GSM8K test) and 14,042 (MMLU test) pass/fail items and three
item-consistency regimes (q_i ~ Beta(a, b), see sfteval.calibration), rule
`max_drop = 0.05`, print per cell: how often the gate passes / fails / stays
inconclusive when nothing changed (A/A), how often it fails at true drops of 0.6 d,
d and 2 d, the median printed "fails 80% at" drop and the median "n to decide" under
A/A. Peer: the rule this replaced ("fail when the upper bound < 0 and the lower bound <
-d"), whose fail rate at a drop inside the allowance (0.6 d) is printed beside ours, with
the ratio.

    python perf/gate_calibration.py [--trials 1000] [--d 0.05]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sfteval.calibration import REGIMES, check_for, simulate, verdict_rates
from sfteval.gate_checks import decide

SIZES = (200, 500, 1319, 14042)


def old_rule_fail_rate(trials: list, d: float) -> float:
    fails = 0
    for t in trials:
        lo, hi = check_for(t, "max_drop", d).ci95
        fails += hi < 0 and lo < -d
    return fails / len(trials)


def row(name: str, n: int, d: float, trials: int, seed: int) -> str:
    a, b = REGIMES[name]
    aa = simulate(n, a, b, 0.0, trials, seed)
    rates = verdict_rates(aa, "max_drop", d)
    checks = [decide([check_for(t, "max_drop", d)])[0] for t in aa[: min(trials, 300)]]
    mde = float(np.median([c.detectable for c in checks if c.detectable is not None]))
    n_dec = [c.n_to_decide for c in checks if c.n_to_decide is not None]
    n_to = f"{int(np.median(n_dec)):,}" if n_dec and rates["inconclusive"] > 0.05 else "-"
    inside = simulate(n, a, b, 0.6 * d, trials, seed + 1)
    f06 = verdict_rates(inside, "max_drop", d)["fail"]
    old06 = old_rule_fail_rate(inside, d)
    f1 = verdict_rates(simulate(n, a, b, d, trials, seed + 2), "max_drop", d)["fail"]
    f2 = verdict_rates(simulate(n, a, b, 2 * d, trials, seed + 3), "max_drop", d)["fail"]
    ratio = f"{old06 / f06:.0f}x" if f06 > 0 else ("inf" if old06 > 0 else "-")
    return (f"| {name} | {n:,} | {rates['pass']:.3f} | {rates['fail']:.3f} | {rates['inconclusive']:.3f} | "
            f"{f06:.3f} | {old06:.3f} | {ratio} | {f1:.3f} | {f2:.3f} | {mde:.4f} | {n_to} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--d", type=float, default=0.05)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"max_drop = {args.d:g}, {args.trials} simulated comparisons per cell (Tango interval, sfteval.gate_checks)\n")
    print("| item consistency | n | A/A pass | A/A fail | A/A inconclusive | fail at 0.6d | old rule at 0.6d | "
          "old/new | fail at d | fail at 2d | fails 80% at (median) | n to decide (A/A median) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for k, name in enumerate(REGIMES):
        for j, n in enumerate(SIZES):
            print(row(name, n, args.d, args.trials, 1000 * k + 10 * j), flush=True)
    print(f"\n({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
