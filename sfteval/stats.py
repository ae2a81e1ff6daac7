"""Error bars for single runs: Wilson for proportions, a range-respecting score interval
for bounded means, t for unbounded means. Corpus BLEU (resampled sufficient statistics) is in
`sfteval.metrics.text` + `sfteval.bootstrap`; paired comparisons live in `sfteval.paired`.

Conventions: `stderr` is the standard error of the reported value (never std/sqrt(B)
of bootstrap replicates, a bug peers shipped); `ci95` is a two-sided 95% interval.

Bounded means (ROUGE, BERTScore, any metric with a known range): the t interval
undercovers badly for sparse metrics at small n (59-87% at n <= 50 when most items
score 0) and leaves the metric's range (rougeL [0.032, 1.257] at n = 5). We use a
Wilson score interval on the metric mapped to [0, 1] with an effective sample size
n_eff = n * m(1-m) / v, where v = s^2 + m(1-m)/(2n): the sample variance plus half a
pseudo-observation of the largest variance the range allows, and a t quantile (n - 1
df). The pseudo-term matters only when few items differ from the rest (it is what keeps
"every item scored 0" from reading as certainty) and vanishes as 1/n; for 0/1 data the
interval is Wilson's. Coverage by simulation (tests/test_stats.py, perf/gate_calibration.py):
>= 93% at n = 20, 50, 200, 1000 for sparse, skewed, U-shaped and ordinary metrics.

Not covered: clustered items (several questions sharing a passage): their intervals are
too narrow by the design effect.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

from sfteval.types import Estimate

Z95 = 1.959963984540054
PSEUDO_VARIANCE_WEIGHT = 0.5  # pseudo-observations of maximal variance added to v (see above)


def _is_binary(values: np.ndarray) -> bool:
    return bool(values.size) and bool(np.all((values == 0.0) | (values == 1.0)))


def wilson_interval(successes: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion; `n` may be an effective (non-integer) size."""
    if n <= 0:
        return (0.0, 1.0)
    p = min(max(successes / n, 0.0), 1.0)
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


@functools.lru_cache(maxsize=4096)
def t_quantile(level: float, df: float) -> float:
    from scipy import stats as sps

    return float(sps.t.ppf(0.5 + level / 2, df)) if df >= 1 else float("inf")


def effective_n(x01: np.ndarray) -> float:
    """n_eff of data already mapped to [0, 1] (see the module docstring)."""
    n = x01.size
    m = float(x01.mean())
    bern = m * (1 - m)
    if bern <= 0.0:
        return float(n)  # every item at one end of the range: Wilson with the real n
    s2 = float(x01.var(ddof=1)) if n > 1 else 0.0
    v = s2 + PSEUDO_VARIANCE_WEIGHT * bern / n
    return n * bern / v


def bounded_interval(values: Sequence[float] | np.ndarray, lo: float, hi: float, level: float = 0.95
                     ) -> tuple[float, float, float]:
    """(lower, upper, n_eff): the effective-n Wilson interval of a mean known to lie in [lo, hi]."""
    x = (np.asarray(values, dtype=float) - lo) / (hi - lo)
    n = x.size
    if n == 0:
        return (lo, hi, 0.0)
    neff = effective_n(x)
    z = t_quantile(level, n - 1) if n > 1 else t_quantile(level, 1)
    a, b = wilson_interval(float(x.mean()) * neff, neff, z)
    return (lo + (hi - lo) * a, lo + (hi - lo) * b, neff)


def bounded_pvalue(mean: float, neff: float, n: int, x0: float, lo: float, hi: float, side: str) -> float:
    """One-sided p-value inverting `bounded_interval`: side "below" tests H0 mean >= x0
    (small p: evidence the mean is below x0), "above" tests H0 mean <= x0."""
    from scipy import stats as sps

    m, m0 = (mean - lo) / (hi - lo), (x0 - lo) / (hi - lo)
    if m0 <= 0.0 or m0 >= 1.0:  # a bound at the edge of the range: nothing can be beyond it
        return 1.0 if (side == "below") == (m0 <= 0.0) else 0.0
    stat = (m - m0) / math.sqrt(m0 * (1 - m0) / neff)
    upper_tail = float(sps.t.sf(stat, max(n - 1, 1)))
    return 1.0 - upper_tail if side == "below" else upper_tail


def mean_estimate(values: Sequence[float], *, proportion: bool | None = None,
                  bounds: tuple[float, float] | None = None) -> Estimate:
    """Mean with its 95% interval: Wilson for pass/fail (0/1) data, the bounded score
    interval when the metric's range is known (`bounds`, or [0, 1] when every value lies
    in it and `proportion` is False), else a t interval. `proportion=None` decides from
    the data; scorers of continuous metrics pass False so that an all-zero ROUGE column
    is not mistaken for pass/fail."""
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
    if bounds is None and bool(np.all((x >= 0.0) & (x <= 1.0))):
        bounds = (0.0, 1.0)
    if bounds is not None:
        lo, hi, neff = bounded_interval(x, *bounds)
        se = float(x.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
        return Estimate(mean, se, (lo, hi), n, f"wilson-eff(range=[{bounds[0]:g},{bounds[1]:g}],n_eff={neff:.1f})")
    if n == 1:
        return Estimate(mean, float("nan"), (float("nan"), float("nan")), 1, "t")
    se = float(x.std(ddof=1) / math.sqrt(n))
    t = t_quantile(0.95, n - 1)
    return Estimate(mean, se, (mean - t * se, mean + t * se), n, "t")


def bootstrap_estimate(
    statistic: Callable[[np.ndarray], float],
    n: int,
    *,
    seed: int,
    resamples: int = 1000,
) -> Estimate:
    """Percentile bootstrap over item indices for a statistic with no summed form
    (an `evaluate` metric recomputed per resample, a ratings win rate).

    `statistic(idx)` computes the metric on the items selected by the index array
    (with repeats). stderr is the standard deviation of the replicates: that is the
    bootstrap's estimate of the statistic's standard error. Statistics of summed
    sufficient statistics (corpus BLEU) use `sfteval.bootstrap` (vectorised, BCa).
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


def interval_pvalue(value: float, ci95: tuple[float, float], x0: float, side: str) -> float:
    """One-sided p-value implied by a reported 95% interval alone (for estimates whose
    data are not at hand): each side of the interval is read as 1.96 normal standard
    errors. Exact at the 5% two-sided level (the interval excludes x0 exactly when the
    p-value is below 0.025), approximate at others."""
    from scipy.special import ndtr

    lo, hi = ci95
    if x0 == value:
        return 0.5
    half = (value - lo) if x0 < value else (hi - value)
    if not half > 0:
        beyond = (x0 > value) if side == "below" else (x0 < value)
        return 0.0 if beyond else 1.0
    z = (value - x0) / (half / Z95)
    return float(ndtr(z)) if side == "below" else float(ndtr(-z))
