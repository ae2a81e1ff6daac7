"""Error bars for single runs: analytic for means, Wilson for proportions, bootstrap for
corpus metrics. Paired comparisons live in `sfteval.paired`.

Conventions: `stderr` is the standard error of the reported value (never std/sqrt(B)
of bootstrap replicates, a bug peers shipped); `ci95` is a two-sided 95% interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from sfteval.types import Estimate

Z95 = 1.959963984540054


def _is_binary(values: np.ndarray) -> bool:
    return bool(values.size) and bool(np.all((values == 0.0) | (values == 1.0)))


def wilson_interval(successes: float, n: int, z: float = Z95) -> tuple[float, float]:
    if n == 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def mean_estimate(values: Sequence[float], *, proportion: bool | None = None) -> Estimate:
    """Mean with analytic stderr: a Wilson interval for pass/fail (0/1) data, else a t
    interval. `proportion=None` decides from the data; scorers of continuous metrics
    pass False so that an all-zero ROUGE column is not mistaken for pass/fail."""
    x = np.asarray(values, dtype=float)
    n = int(x.size)
    if n == 0:
        return Estimate(float("nan"), float("nan"), (float("nan"), float("nan")), 0, "empty")
    mean = float(x.mean())
    if proportion is None:
        proportion = _is_binary(x)
    if proportion:
        se = math.sqrt(mean * (1 - mean) / n)
        return Estimate(mean, se, wilson_interval(float(x.sum()), n), n, "wilson")
    if n == 1:
        return Estimate(mean, float("nan"), (float("nan"), float("nan")), 1, "t")
    from scipy import stats as sps

    se = float(x.std(ddof=1) / math.sqrt(n))
    t = float(sps.t.ppf(0.975, n - 1))
    return Estimate(mean, se, (mean - t * se, mean + t * se), n, "t")


def bootstrap_estimate(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    seed: int,
    resamples: int = 1000,
) -> Estimate:
    """Percentile bootstrap over item indices for a corpus-level statistic.

    `statistic(idx)` computes the metric on the items selected by the index array
    (with repeats). stderr is the standard deviation of the replicates: that is the
    bootstrap's estimate of the statistic's standard error.
    """
    full = float(statistic(np.arange(n)))
    if n < 2:
        return Estimate(full, float("nan"), (float("nan"), float("nan")), n, "bootstrap")
    rng = np.random.default_rng(seed)
    reps = np.empty(resamples)
    for b in range(resamples):
        reps[b] = statistic(rng.integers(0, n, size=n))
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(full, float(reps.std(ddof=1)), (float(lo), float(hi)), n, f"bootstrap(B={resamples},seed={seed})")
