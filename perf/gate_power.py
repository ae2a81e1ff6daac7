"""How often does a regression gate fire? sfteval's CI gate vs a fixed-tolerance gate.

Peer: the fixed-tolerance check used in vLLM's GSM8K CI (`accuracy >= expected - 0.08`
on the point estimate, expected = the base model's measured score). Ours: `sfteval gate`
with `max_drop = 0.05` (sfteval.gate.judge_max_drop on the paired bootstrap CI).

For each scenario (how consistently items are solved: q_i ~ Beta(a, b)), simulate
TRIALS comparisons of N pass/fail items, with a true drop of 0 (false alarms) and of 5
points (power), and print both gates' firing rates and the power ratio.

    python perf/gate_power.py [--trials 400] [--items 1000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from sfteval.gate import judge_max_drop
from sfteval.paired import paired_bootstrap


def rates(a: float, b: float, drop: float, trials: int, n: int, seed: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    q = rng.beta(a, b, size=(trials, n))
    base = rng.random((trials, n)) < q
    tuned = rng.random((trials, n)) < q * (1 - drop / (a / (a + b)))
    ours = peer = 0
    for t in range(trials):
        diff = tuned[t].astype(float) - base[t]
        ci = paired_bootstrap(diff, seed=t, resamples=2000).ci95
        ours += judge_max_drop(ci[0], ci[1], 0.05) == "fail"
        peer += tuned[t].mean() < base[t].mean() - 0.08
    return ours / trials, peer / trials


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--items", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"{args.items} items, {args.trials} trials per cell; fail rates")
    print(f"{'item consistency':<26}{'self: sfteval':>14}{'self: fixed':>12}{'5pt: sfteval':>14}"
          f"{'5pt: fixed':>12}{'power ratio':>13}")
    for name, (a, b) in {"U-shaped Beta(0.6,0.4)": (0.6, 0.4), "flat Beta(2,2)": (2.0, 2.0),
                         "coin flips Beta(60,40)": (60.0, 40.0)}.items():
        s_ours, s_peer = rates(a, b, 0.0, args.trials, args.items, 1)
        d_ours, d_peer = rates(a, b, 0.05, args.trials, args.items, 2)
        ratio = d_ours / d_peer if d_peer else float("inf")
        print(f"{name:<26}{s_ours:>14.3f}{s_peer:>12.3f}{d_ours:>14.3f}{d_peer:>12.3f}{ratio:>13.1f}")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
