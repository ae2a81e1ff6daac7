"""Error bars for single runs: Wilson for proportions, a range-respecting score interval
for bounded means, a bootstrap-t (studentized) interval for unbounded means (the t interval
under-covered skewed data: `studentized_bootstrap`). Corpus BLEU (resampled sufficient statistics) is in
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
        return Estimate(mean, float("nan"), (float("nan"), float("nan")), 1, "bootstrap-t")
    se = float(x.std(ddof=1) / math.sqrt(n))
    st = studentized_bootstrap(x)
    return Estimate(mean, se, st.ci95, n, st.method)


# ----------------------------------------------------------------------------- unbounded means

# Probabilities at which the bootstrap-t distribution is kept (fine in the tails, where
# tests are decided), so a one-sided p-value can be read back at any threshold.
T_GRID = (0.0005, 0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1,
          0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.985, 0.9875,
          0.99, 0.9925, 0.995, 0.9975, 0.999, 0.9995)
BOOT_T_RESAMPLES = 10_000
_BOOT_T_CELLS = 50_000_000  # cap on B x n draws per estimate: B shrinks (>= 2,000) for very large n
_BOOT_T_CHUNK = 4_000_000


@dataclass(frozen=True)
class StudentizedBootstrap:
    """A bootstrap-t (studentized) 95% interval of a mean: mean - q[1-a/2] se, mean - q[a/2] se,
    q the quantiles of t* = (mean* - mean) / se* over item resamples (`quantiles` at T_GRID),
    each taken no nearer 0 than Student's t(n-1) quantile (never narrower than t)."""

    mean: float
    se: float
    ci95: tuple[float, float]
    quantiles: tuple[float, ...]
    resamples: int
    seed: int

    @property
    def method(self) -> str:
        return f"bootstrap-t(B={self.resamples},seed={self.seed})"

    def inference(self, n: int) -> dict[str, Any]:
        return {"family": "boot-t", "n": n, "mean": self.mean, "se": self.se, "grid": list(T_GRID),
                "quantiles": list(self.quantiles)}


def studentized_bootstrap(values: Sequence[float] | np.ndarray, *, seed: int | None = None,
                          resamples: int | None = None) -> StudentizedBootstrap:
    """Bootstrap-t interval of the mean of an unbounded metric (no known range).

    Why not the t interval: on skewed data it under-covers: by simulation
    (perf/interval_coverage.py, 1,000 trials a cell) t covered 84.5% at n = 20 and 90.1%
    at n = 50 for lognormal(sigma = 1) items, 74.6 / 82.1% for sigma = 1.5, 88.8% for
    gamma(0.5) at n = 20; this interval 92.1 / 95.4%, 86.9 / 91.2% and 95.0%, and >= 95%
    for exponential items (t 92%); at n = 200 (500 trials) t 91.8% / 88.0% for lognormal
    sigma = 1 / 1.5, this interval 94.8 / 93.4%. Why not BCa: for corpus BLEU at n = 20 it covered
    89.8% where the studentized form covered 94-96% (`sfteval.bootstrap`); it was not
    re-measured for plain means. Each t* quantile is kept no nearer 0 than t's (at n = 2
    every resample with spread has t* = 0). The seed defaults to a hash of the data, so
    the same scores always give the same interval (and it is recorded in `method`)."""
    import hashlib

    x = np.asarray(values, dtype=float)
    n = x.size
    mean = float(x.mean()) if n else float("nan")
    if seed is None:
        seed = int.from_bytes(hashlib.sha256(x.tobytes()).digest()[:4], "little")
    b = int(max(2000, min(resamples or BOOT_T_RESAMPLES, _BOOT_T_CELLS // max(n, 1))))
    if n < 2:
        nan = float("nan")
        return StudentizedBootstrap(mean, nan, (nan, nan), tuple(nan for _ in T_GRID), b, seed)
    sd = float(x.std(ddof=1))
    se = sd / math.sqrt(n)
    if not se > 0:  # every item alike: no spread to resample
        return StudentizedBootstrap(mean, 0.0, (mean, mean), tuple(0.0 for _ in T_GRID), b, seed)
    rng = np.random.default_rng(seed)
    stats: list[np.ndarray] = []
    rows = max(1, _BOOT_T_CHUNK // n)
    for start in range(0, b, rows):
        xs = x[rng.integers(0, n, size=(min(b, start + rows) - start, n))]
        m, s = xs.mean(axis=1), xs.std(axis=1, ddof=1)
        ok = s > 0  # a resample of one repeated value has no t*; it is dropped
        stats.append((m[ok] - mean) / (s[ok] / math.sqrt(n)))
    tstar = np.concatenate(stats)
    if tstar.size < 100:  # too few items with spread to resample: fall back to t
        t = t_quantile(0.95, n - 1)
        q = tuple(_t_ppf(p, n - 1) for p in T_GRID)
        return StudentizedBootstrap(mean, se, (mean - t * se, mean + t * se), q, b, seed)
    # never narrower than t on either side: at small n the bootstrap's t* is discrete (at n = 2
    # every resample with spread has t* = 0), and t is the floor a reader expects
    qb = np.quantile(tstar, T_GRID)
    qt = np.array([_t_ppf(p, n - 1) for p in T_GRID])
    grid = np.asarray(T_GRID)
    q = tuple(float(v) for v in np.where(grid < 0.5, np.minimum(qb, qt), np.where(grid > 0.5, np.maximum(qb, qt), qb)))
    lo, hi = mean - q[T_GRID.index(0.975)] * se, mean - q[T_GRID.index(0.025)] * se
    return StudentizedBootstrap(mean, se, (float(lo), float(hi)), q, b, seed)


def _t_ppf(p: float, df: float) -> float:
    return 0.0 if p == 0.5 else math.copysign(t_quantile(abs(2 * p - 1), df), p - 0.5)


def boot_t_pvalue(inference: Mapping[str, Any], x0: float, side: str) -> float:
    """One-sided p-value inverting a `StudentizedBootstrap` at threshold x0: side "below"
    tests H0 mean >= x0 (small p: evidence the mean is below x0), "above" H0 mean <= x0.
    Read off the kept quantiles (linear between grid points, clamped to the grid's ends:
    never smaller than 0.0005), so at 0.025 it agrees with the 95% interval exactly."""
    mean, se = float(inference["mean"]), float(inference["se"])
    if not se > 0:
        if x0 == mean:
            return 1.0
        below = x0 > mean
        return (0.0 if below else 1.0) if side == "below" else (1.0 if below else 0.0)
    grid, quant = np.asarray(inference["grid"], dtype=float), np.asarray(inference["quantiles"], dtype=float)
    # x0 is the one-sided upper bound at level p exactly when x0 = mean - q(p) se, i.e. when
    # p = F*(t) at t = (mean - x0) / se (F* the distribution of t*): that is p "below";
    # the lower bound at level p is mean - q(1 - p) se, so p "above" is 1 - F*(t)
    t = (mean - x0) / se
    cdf = float(np.interp(t, quant, grid, left=float(grid[0]), right=float(grid[-1])))
    return cdf if side == "below" else 1.0 - cdf


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
