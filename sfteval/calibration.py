"""Calibrating the gate by simulation: how often each rule fails, passes or hedges.

Items differ in how consistently a model solves them: item i is solved with probability
q_i ~ Beta(a, b) (U-shaped: most items always or never solved, as for real models;
flat; coin flips: every item near the mean, the worst case for a paired test). Base and
tuned sample independently given q; the tuned model's probabilities are scaled so that
the expected score drops by `drop`. Each trial is one comparison of n pass/fail items,
judged exactly as `sfteval gate` judges it (Tango's interval, the tests of
`sfteval.gate_checks`). Used by tests/test_gate.py (fast settings) and
perf/gate_calibration.py (the tables in docs/ci-gate.md).

Not covered: continuous metrics (their intervals' coverage is tested in
tests/test_intervals.py), clustered items.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from sfteval.gate_checks import Check, decide
from sfteval.paired import tango_interval, tango_pvalue

REGIMES: dict[str, tuple[float, float]] = {
    "U-shaped Beta(0.6,0.4)": (0.6, 0.4),
    "flat Beta(2,2)": (2.0, 2.0),
    "coin flips Beta(60,40)": (60.0, 40.0),
}


@dataclass(frozen=True)
class Trial:
    n: int
    gained: int
    lost: int

    @property
    def delta(self) -> float:
        return (self.gained - self.lost) / self.n


def simulate(n: int, a: float, b: float, drop: float, trials: int, seed: int) -> list[Trial]:
    """`trials` comparisons of n items with a true expected drop of `drop`."""
    rng = np.random.default_rng(seed)
    mean = a / (a + b)
    out: list[Trial] = []
    chunk = max(1, 2_000_000 // n)
    for start in range(0, trials, chunk):
        m = min(trials, start + chunk) - start
        q = rng.beta(a, b, size=(m, n))
        base = rng.random((m, n)) < q
        tuned = rng.random((m, n)) < np.clip(q * (1 - drop / mean), 0, 1)
        gained = np.sum(tuned & ~base, axis=1)
        lost = np.sum(base & ~tuned, axis=1)
        out += [Trial(n, int(g), int(lo)) for g, lo in zip(gained, lost)]
    return out


def check_for(trial: Trial, rule: str, threshold: float, target: str = "bench/metric") -> Check:
    """The pending check `sfteval gate` builds for one simulated comparison."""
    x = -threshold if rule == "max_drop" else 0.0
    ci = tango_interval(trial.gained, trial.lost, trial.n)
    pf = tango_pvalue(trial.gained, trial.lost, trial.n, x, "below")
    pp = None if rule == "no_drop" else tango_pvalue(trial.gained, trial.lost, trial.n, x, "above")
    sigma2 = max((trial.gained + trial.lost) / trial.n - trial.delta**2, 0.0)
    return Check(rule, target, threshold, trial.delta, ci, "pending", "", p_fail=pf, p_pass=pp, n=trial.n,
                 sigma2=sigma2)


def verdict_rates(trials: list[Trial], rule: str, threshold: float) -> dict[str, float]:
    """Share of single-check verdicts (pass / fail / inconclusive) over the trials."""
    verdicts = [decide([check_for(t, rule, threshold)])[0].verdict for t in trials]
    return {v: verdicts.count(v) / len(verdicts) for v in ("pass", "fail", "inconclusive")}


def family_fail_rate(per_check: list[list[Trial]], rule: str, threshold: float, multiplicity: str) -> float:
    """Share of rule sets (one check per list, trial by trial) with at least one fail."""
    fails = 0
    for row in zip(*per_check):
        checks = decide([check_for(t, rule, threshold, f"b{i}/m") for i, t in enumerate(row)], multiplicity)
        fails += any(c.verdict == "fail" for c in checks)
    return fails / len(per_check[0])
