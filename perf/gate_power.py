"""How often does a regression gate fire? sfteval's CI gate vs a fixed-tolerance gate.

Peer: the fixed-tolerance check used in vLLM's GSM8K CI (`accuracy >= expected - 0.08`
on the point estimate, expected = the base model's measured score). Ours: `sfteval gate`
with `max_drop = 0.05` (non-inferiority on Tango's paired interval, sfteval.gate_checks),
and `no_drop` (fails on any demonstrated drop).

For each scenario (how consistently items are solved: q_i ~ Beta(a, b)), simulate
TRIALS comparisons of N pass/fail items, with a true drop of 0 (false alarms) and of 10
points (twice the allowance), and print the gates' firing rates and the power ratio.

    python perf/gate_power.py [--trials 400] [--items 1319]
"""

from __future__ import annotations

import argparse
import time

from sfteval.calibration import REGIMES, simulate, verdict_rates


def rates(a: float, b: float, drop: float, trials: int, n: int, seed: int) -> tuple[float, float, float]:
    sims = simulate(n, a, b, drop, trials, seed)
    ours = verdict_rates(sims, "max_drop", 0.05)["fail"]
    no_drop = verdict_rates(sims, "no_drop", 0.0)["fail"]
    peer = sum(t.delta < -0.08 for t in sims) / trials  # tuned < base - 0.08 on the point estimate
    return ours, no_drop, peer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, default=400)
    ap.add_argument("--items", type=int, default=1319)
    args = ap.parse_args()
    t0 = time.perf_counter()
    print(f"{args.items} items, {args.trials} trials per cell; fail rates")
    print(f"{'item consistency':<26}{'A/A: max_drop':>14}{'A/A: no_drop':>13}{'A/A: fixed':>11}"
          f"{'10pt: max_drop':>15}{'10pt: no_drop':>14}{'10pt: fixed':>12}{'power ratio':>13}")
    for name, (a, b) in REGIMES.items():
        s_ours, s_nd, s_peer = rates(a, b, 0.0, args.trials, args.items, 1)
        d_ours, d_nd, d_peer = rates(a, b, 0.10, args.trials, args.items, 2)
        ratio = d_ours / d_peer if d_peer else float("inf")
        print(f"{name:<26}{s_ours:>14.3f}{s_nd:>13.3f}{s_peer:>11.3f}{d_ours:>15.3f}{d_nd:>14.3f}{d_peer:>12.3f}"
              f"{ratio:>13.1f}")
    print(f"({time.perf_counter() - t0:.1f} s)")


if __name__ == "__main__":
    main()
