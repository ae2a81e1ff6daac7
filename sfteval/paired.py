"""Paired statistics for base-vs-tuned comparisons over the same items.

Covered: the paired percentile bootstrap of the mean per-item difference (seed and
number of resamples recorded in the Estimate's `method`), the exact McNemar test for
0/1 metrics (a binomial test on the discordant pairs), a paired t-test for other
metrics, Holm's step-down adjustment, retention (tuned / base) and flip counts.

Not covered: corpus-level metrics recomputed per resample (BLEU over the corpus); a
comparison works on the per-sample scores that docs/run-format.md stores, so for BLEU
the delta is of the mean sentence score. Items must be aligned by the caller.

The bootstrap draws pair types from a multinomial when the differences take few
distinct values (always so for 0/1 metrics: -1, 0, +1). Resampling n items with
replacement and counting how many of each value were drawn IS a multinomial draw, so
the replicates have exactly the distribution of the item-resampling bootstrap at a
fraction of the cost; that is what makes the calibration simulations in the tests fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sfteval.stats import mean_estimate
from sfteval.types import Estimate

DEFAULT_RESAMPLES = 2000
_MULTINOMIAL_MAX_VALUES = 64  # beyond this, resample indices directly
_INDEX_CHUNK_CELLS = 4_000_000  # cap on B x n index cells held at once


@dataclass(frozen=True)
class PairedResult:
    """Everything compare.py reports for one metric of one benchmark."""

    base: Estimate
    tuned: Estimate
    delta: Estimate  # tuned - base, paired bootstrap CI
    p_value: float
    test: str  # "mcnemar-exact" | "paired-t" | "none"
    binary: bool
    lost: int  # base 1 -> tuned 0 (binary metrics only; else 0)
    gained: int  # base 0 -> tuned 1
    retention: float | None


def paired_bootstrap(diff: Sequence[float] | np.ndarray, *, seed: int, resamples: int = DEFAULT_RESAMPLES) -> Estimate:
    """Percentile-bootstrap 95% CI of mean(diff), resampling items with replacement."""
    d = np.asarray(diff, dtype=float)
    n = int(d.size)
    method = f"paired-bootstrap(B={resamples},seed={seed})"
    if n == 0:
        return Estimate(float("nan"), float("nan"), (float("nan"), float("nan")), 0, method)
    mean = float(d.mean())
    if n == 1:
        return Estimate(mean, float("nan"), (float("nan"), float("nan")), 1, method)
    reps = bootstrap_means(d, seed=seed, resamples=resamples)
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(mean, float(reps.std(ddof=1)), (float(lo), float(hi)), n, method)


def bootstrap_means(d: np.ndarray, *, seed: int, resamples: int) -> np.ndarray:
    """`resamples` bootstrap replicates of the mean of `d`."""
    rng = np.random.default_rng(seed)
    n = d.size
    values, counts = np.unique(d, return_counts=True)
    if values.size <= _MULTINOMIAL_MAX_VALUES:
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ values / n
    reps = np.empty(resamples)
    rows = max(1, _INDEX_CHUNK_CELLS // n)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, n, size=(stop - start, n))
        reps[start:stop] = d[idx].mean(axis=1)
    return reps


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs at 1/2."""
    discordant = lost + gained
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(gained, discordant, 0.5).pvalue)


def paired_t(diff: np.ndarray) -> float:
    """Two-sided paired t-test p-value on the differences (1.0 when all are equal)."""
    if diff.size >= 1 and not np.any(diff):
        return 1.0
    if diff.size < 2:
        return float("nan")
    if float(np.ptp(diff)) == 0.0:
        return 0.0  # the same nonzero difference on every item: zero variance, t is infinite
    from scipy.stats import ttest_1samp

    return float(ttest_1samp(diff, 0.0).pvalue)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error control), in input order.

    Sorted ascending, the k-th smallest (0-based) is multiplied by (m - k), then a
    running maximum keeps the adjusted values monotone, capped at 1.
    """
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(np.argsort(p, kind="stable")):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return [float(x) for x in adjusted]


def retention(base: float, tuned: float) -> float | None:
    """tuned / base; None when the base score is 0 (or not finite)."""
    if not (math.isfinite(base) and math.isfinite(tuned)) or base == 0.0:
        return None
    return tuned / base


def is_binary(x: np.ndarray) -> bool:
    return bool(x.size) and bool(np.all((x == 0.0) | (x == 1.0)))


def compare_paired(
    base: Sequence[float] | np.ndarray,
    tuned: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
) -> PairedResult:
    """Paired comparison of per-item scores; `base[i]` and `tuned[i]` are the same item."""
    b = np.asarray(base, dtype=float)
    t = np.asarray(tuned, dtype=float)
    if b.shape != t.shape:
        raise ValueError(f"paired arrays differ in length: {b.size} vs {t.size}")
    diff = t - b
    binary = is_binary(b) and is_binary(t)
    delta = paired_bootstrap(diff, seed=seed, resamples=resamples)
    lost = gained = 0
    if b.size == 0:
        p, test = float("nan"), "none"
    elif binary:
        lost = int(np.sum((b == 1.0) & (t == 0.0)))
        gained = int(np.sum((b == 0.0) & (t == 1.0)))
        p, test = mcnemar_exact(lost, gained), "mcnemar-exact"
    else:
        p, test = paired_t(diff), "paired-t"
    be, te = mean_estimate(b), mean_estimate(t)
    return PairedResult(be, te, delta, p, test, binary, lost, gained, retention(be.value, te.value))
