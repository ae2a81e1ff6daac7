"""Paired statistics for base-vs-tuned comparisons over the same items.

Covered:
- 0/1 metrics: Tango's (1998) score interval for the difference of paired proportions,
  and the McNemar score test, which is the same statistic at a difference of 0, so the
  interval excludes 0 exactly when the test rejects (the old percentile bootstrap next to
  an exact McNemar p disagreed in up to 4% of comparisons). The exact McNemar p is kept
  beside it (`p_exact`). Tango's interval covers >= 93% at n = 20 (tests/test_paired.py);
  it never collapses to [0, 0]: no discordant pair among 88 items still leaves about
  +-4 points.
- Bounded continuous metrics (ROUGE, BERTScore, sentence BLEU): the effective-n score
  interval of `sfteval.stats` on the differences (range [-(hi-lo), hi-lo]), with its own
  p-value; unbounded metrics: the paired bootstrap-t interval and the p-value read from
  the same t* distribution (the t interval under-covered skewed differences:
  `sfteval.stats.studentized_bootstrap`).
- One-sided p-values at any threshold, inverting the same intervals (the gate's
  non-inferiority tests), Holm's step-down adjustment, Benjamini-Hochberg q-values,
  retention (tuned / base), flip counts, and `degenerate`: a metric that did not vary in
  either run measured nothing and is not evidence of no change.
- `paired_bootstrap`: the percentile bootstrap of a mean difference, kept for metrics
  without an analytic interval and as a cross-check in the tests.

Corpus-level metrics (corpus BLEU) are compared by resampling their sufficient
statistics (`sfteval.metrics.text.paired_corpus_bleu`). Items must be aligned by the caller.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.special import ndtr, ndtri

from sfteval.stats import boot_t_pvalue, bounded_interval, bounded_pvalue, mean_estimate, studentized_bootstrap, t_quantile
from sfteval.types import Estimate

DEFAULT_RESAMPLES = 10_000
_MULTINOMIAL_MAX_VALUES = 64  # beyond this, resample indices directly
_INDEX_CHUNK_CELLS = 4_000_000  # cap on B x n index cells held at once


@dataclass(frozen=True)
class PairedResult:
    """Everything compare.py reports for one metric of one benchmark."""

    base: Estimate
    tuned: Estimate
    delta: Estimate  # tuned - base
    p_value: float  # two-sided, from the same statistic as delta.ci95
    test: str  # "mcnemar-score" | "bounded-score" | "paired-bootstrap-t" | "paired-t" (n < 2) | "none"
    binary: bool
    lost: int  # base 1 -> tuned 0 (binary metrics only; else 0)
    gained: int  # base 0 -> tuned 1
    retention: float | None
    p_exact: float | None = None  # exact McNemar (binary only)
    inference: dict[str, Any] = field(default_factory=dict)  # what `one_sided_p` needs
    degenerate: str | None = None  # why this metric measured nothing, else None


# ----------------------------------------------------------------------------- binary: Tango


def tango_z(gained: int, lost: int, n: int, d0: float) -> float:
    """Tango's score statistic for H0: p_tuned - p_base = d0.

    With b = gained (tuned 1, base 0), c = lost, the restricted maximum-likelihood
    estimate of P(c cell) is the positive root of 2n x^2 - B x - C = 0, B = b(1-d0) +
    c(1-3 d0) - 2(n-b-c) d0, C = c d0 (1-d0); the variance of b - c under H0 is
    n(2x + d0(1-d0)). At d0 = 0 this is McNemar's (b - c) / sqrt(b + c).
    """
    b, c = float(gained), float(lost)
    m = n - b - c
    big_b = b * (1 - d0) + c * (1 - 3 * d0) - 2 * m * d0
    big_c = c * d0 * (1 - d0)
    x = (big_b + math.sqrt(max(big_b * big_b + 8 * n * big_c, 0.0))) / (4 * n)
    var = n * (2 * x + d0 * (1 - d0))
    num = b - c - n * d0
    if var <= 1e-300:
        return 0.0 if abs(num) < 1e-12 else math.copysign(math.inf, num)
    return num / math.sqrt(var)


def tango_interval(gained: int, lost: int, n: int, level: float = 0.95) -> tuple[float, float]:
    """Score interval for p_tuned - p_base from the discordant counts (Tango 1998)."""
    from scipy.optimize import brentq

    if n <= 0:
        return (-1.0, 1.0)
    z = float(-ndtri((1 - level) / 2))
    est = (gained - lost) / n
    eps = 1e-12

    def f(d: float) -> float:
        return tango_z(gained, lost, n, d)

    lo = -1.0 if f(-1 + eps) <= z else brentq(lambda d: f(d) - z, -1 + eps, est, xtol=1e-12)
    hi = 1.0 if f(1 - eps) >= -z else brentq(lambda d: f(d) + z, est, 1 - eps, xtol=1e-12)
    return (float(lo), float(hi))


def tango_pvalue(gained: int, lost: int, n: int, d0: float, side: str) -> float:
    """One-sided p-value: side "below" tests H0 delta >= d0 (small: the delta is below
    d0), "above" tests H0 delta <= d0. Inverts `tango_interval`."""
    if d0 <= -1.0 or d0 >= 1.0:
        return 1.0 if (side == "below") == (d0 <= -1.0) else 0.0
    z = tango_z(gained, lost, n, d0)
    return float(ndtr(z)) if side == "below" else float(ndtr(-z))


def mcnemar_exact(lost: int, gained: int) -> float:
    """Two-sided exact McNemar p-value: binomial test of the discordant pairs at 1/2."""
    discordant = lost + gained
    if discordant == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(gained, discordant, 0.5).pvalue)


def mcnemar_score(lost: int, gained: int) -> float:
    """Two-sided McNemar score (asymptotic, no continuity correction) p-value: the test
    Tango's interval inverts at 0."""
    if lost + gained == 0:
        return 1.0
    z = (gained - lost) / math.sqrt(gained + lost)
    return float(2 * ndtr(-abs(z)))


# ----------------------------------------------------------------------------- continuous


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


def _t_estimate(diff: np.ndarray) -> Estimate:
    n = diff.size
    mean = float(diff.mean())
    if n < 2:
        return Estimate(mean, float("nan"), (float("nan"), float("nan")), n, "paired-t")
    se = float(diff.std(ddof=1) / math.sqrt(n))
    t = t_quantile(0.95, n - 1)
    return Estimate(mean, se, (mean - t * se, mean + t * se), n, "paired-t")


def one_sided_p(inference: dict[str, Any], x0: float, side: str) -> float:
    """One-sided p-value at threshold x0 from a comparison's recorded `inference`
    (side "below": H0 delta >= x0; "above": H0 delta <= x0). NaN if unknown."""
    fam = inference.get("family")
    if fam == "tango":
        return tango_pvalue(int(inference["gained"]), int(inference["lost"]), int(inference["n"]), x0, side)
    if fam == "bounded":
        r = float(inference["range"])
        return bounded_pvalue(float(inference["mean"]), float(inference["n_eff"]), int(inference["n"]), x0, -r, r, side)
    if fam == "boot-t":
        return boot_t_pvalue(inference, x0, side)
    if fam == "t":
        from scipy import stats as sps

        se, df = float(inference["se"]), float(inference["df"])
        if not se > 0:
            if x0 == float(inference["mean"]):
                return 1.0
            below = x0 > float(inference["mean"])
            return (0.0 if below else 1.0) if side == "below" else (1.0 if below else 0.0)
        stat = (float(inference["mean"]) - x0) / se
        return float(sps.t.cdf(stat, df)) if side == "below" else float(sps.t.sf(stat, df))
    return float("nan")


# ----------------------------------------------------------------------------- multiplicity


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


def bh_qvalues(pvalues: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (q-values; false discovery rate), input order."""
    p = np.asarray(pvalues, dtype=float)
    m = p.size
    if m == 0:
        return []
    order = np.argsort(p, kind="stable")
    ranked = p[order] * m / np.arange(1, m + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(m)
    out[order] = np.minimum(q, 1.0)
    return [float(x) for x in out]


# ----------------------------------------------------------------------------- bootstrap


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
    """`resamples` bootstrap replicates of the mean of `d` (a multinomial over the
    distinct values when there are few: the same distribution as index resampling)."""
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


# ----------------------------------------------------------------------------- one metric


def retention(base: float, tuned: float) -> float | None:
    """tuned / base; None when the base score is 0 (or not finite)."""
    if not (math.isfinite(base) and math.isfinite(tuned)) or base == 0.0:
        return None
    return tuned / base


def is_binary(x: np.ndarray) -> bool:
    return bool(x.size) and bool(np.all((x == 0.0) | (x == 1.0)))


def degenerate(base: np.ndarray, tuned: np.ndarray) -> str | None:
    """Why a metric measured nothing, or None. (Near) zero variance in BOTH runs at one
    value: every item (all but at most one) scores the same value in each run, so
    neither run can show a change; [0, 0] would be a statement about the metric, not
    about the models."""
    if base.size == 0:
        return "no aligned items"

    def off_mode(x: np.ndarray) -> tuple[int, float]:
        values, counts = np.unique(x, return_counts=True)
        k = int(np.argmax(counts))
        return int(x.size - counts[k]), float(values[k])

    (ob, vb), (ot, vt) = off_mode(base), off_mode(tuned)
    # both runs (nearly) constant AT THE SAME VALUE: base all 0 and tuned all 1 is the
    # largest change there is, not a metric that measured nothing
    if ob <= 1 and ot <= 1 and vb == vt and base.size >= 2:
        return (f"(near) zero variance in both runs: all but {max(ob, ot)} of {base.size} items score {vb:g} in "
                "each; the metric measured nothing here")
    return None


def compare_paired(
    base: Sequence[float] | np.ndarray,
    tuned: Sequence[float] | np.ndarray,
    *,
    seed: int = 0,
    resamples: int = DEFAULT_RESAMPLES,
    bounds: tuple[float, float] | None = None,
) -> PairedResult:
    """Paired comparison of per-item scores; `base[i]` and `tuned[i]` are the same item.

    `bounds` is the metric's range when known; [0, 1] is assumed when every score lies in
    it. `seed`/`resamples` are unused by the analytic intervals and kept for callers that
    pass them through.
    """
    del seed, resamples
    b = np.asarray(base, dtype=float)
    t = np.asarray(tuned, dtype=float)
    if b.shape != t.shape:
        raise ValueError(f"paired arrays differ in length: {b.size} vs {t.size}")
    n = int(b.size)
    diff = t - b
    binary = is_binary(b) and is_binary(t)
    be, te = mean_estimate(b), mean_estimate(t)
    ret = retention(be.value, te.value)
    why = degenerate(b, t)
    nan2 = (float("nan"), float("nan"))
    if n == 0:
        return PairedResult(be, te, Estimate(float("nan"), float("nan"), nan2, 0, "none"), float("nan"), "none",
                            binary, 0, 0, ret, degenerate=why)
    mean = float(diff.mean())
    if binary:
        lost = int(np.sum((b == 1.0) & (t == 0.0)))
        gained = int(np.sum((b == 0.0) & (t == 1.0)))
        ci = tango_interval(gained, lost, n)
        se = math.sqrt(max((gained + lost) / n - mean * mean, 0.0) / n)
        delta = Estimate(mean, se, ci, n, "tango-score")
        inf = {"family": "tango", "n": n, "gained": gained, "lost": lost}
        return PairedResult(be, te, delta, mcnemar_score(lost, gained), "mcnemar-score", True, lost, gained, ret,
                            mcnemar_exact(lost, gained), inf, why)
    if bounds is None and bool(np.all((b >= 0) & (b <= 1) & (t >= 0) & (t <= 1))):
        bounds = (0.0, 1.0)
    se = float(diff.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    if bounds is not None:
        r = float(bounds[1] - bounds[0])
        lo, hi, neff = bounded_interval(diff, -r, r)
        delta = Estimate(mean, se, (lo, hi), n, f"bounded-score(range=[{-r:g},{r:g}],n_eff={neff:.1f})")
        inf = {"family": "bounded", "n": n, "mean": mean, "n_eff": neff, "range": r}
        p = 2 * min(one_sided_p(inf, 0.0, "below"), one_sided_p(inf, 0.0, "above"))
        if not np.any(diff):
            p = 1.0
        return PairedResult(be, te, delta, min(1.0, p), "bounded-score", False, 0, 0, ret, None, inf, why)
    if n < 2:
        return PairedResult(be, te, _t_estimate(diff), float("nan"), "paired-t", False, 0, 0, ret, None, {}, why)
    # unbounded differences: the paired bootstrap-t (the t interval under-covered skewed data:
    # sfteval.stats.studentized_bootstrap), its p-value read from the same t* distribution
    st = studentized_bootstrap(diff)
    inf = st.inference(n)
    delta = Estimate(mean, se, st.ci95, n, f"paired-{st.method}")
    p = 1.0 if not np.any(diff) else min(1.0, 2 * min(one_sided_p(inf, 0.0, "below"), one_sided_p(inf, 0.0, "above")))
    return PairedResult(be, te, delta, p, "paired-bootstrap-t", False, 0, 0, ret, None, inf, why)

