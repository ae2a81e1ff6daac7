"""Every interval sfteval reports covers >= 93% at n = 20, 50, 200, 1000, by simulation
(seeded, deterministic, fast settings; perf/gate_calibration.py prints the full tables).

Regimes: pass/fail items with heterogeneous difficulty (U-shaped, flat, coin flips, rare
successes) and bounded continuous metrics that are sparse (most items 0), skewed,
ordinary (ROUGE-like) or bimodal. The old intervals failed here: the percentile bootstrap
of a paired 0/1 difference at n = 20, the t interval of a sparse metric (59-87% at
n <= 50) and of a sparse paired difference (75% at n = 20).
"""

from __future__ import annotations

import numpy as np
import pytest

from sfteval.paired import compare_paired, paired_bootstrap, tango_interval
from sfteval.stats import mean_estimate

# the small sizes, where the old intervals failed, run in every test session; the large
# ones carry the `slow` marker (CI runs them)
SIZES = (20, 50, pytest.param(200, marks=pytest.mark.slow), pytest.param(1000, marks=pytest.mark.slow))
# trials per cell: the binomial SE of a coverage of 0.95 over T trials is 0.22 / sqrt(T)
TRIALS = {20: 1200, 50: 1200, 200: 800, 1000: 500}
FLOOR = 0.93


def _slack(n: int) -> float:
    """Allowed shortfall below the floor for simulation noise (one binomial SE)."""
    return 0.22 / np.sqrt(TRIALS[n])


BINARY_REGIMES = {"U-shaped": (0.6, 0.4), "flat": (2.0, 2.0), "coin flips": (60.0, 40.0), "rare": (0.3, 3.0)}


def _binary_coverage(n: int, a: float, b: float, drop: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    big = rng.beta(a, b, 400_000)
    true = float(np.mean(np.clip(big - drop, 0, 1) - big))
    trials = TRIALS[n]
    q = rng.beta(a, b, size=(trials, n))
    base = rng.random((trials, n)) < q
    tuned = rng.random((trials, n)) < np.clip(q - drop, 0, 1)
    gained = np.sum(tuned & ~base, axis=1)
    lost = np.sum(base & ~tuned, axis=1)
    hits = 0
    for g, lo_ in zip(gained, lost):
        lo, hi = tango_interval(int(g), int(lo_), n)
        hits += lo <= true <= hi
    return hits / trials


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("regime", list(BINARY_REGIMES))
def test_paired_binary_delta_covers(n: int, regime: str) -> None:
    a, b = BINARY_REGIMES[regime]
    for drop, seed in ((0.0, 1), (0.05, 2)):
        cov = _binary_coverage(n, a, b, drop, seed + n)
        assert cov >= FLOOR - _slack(n), (regime, n, drop, cov)


def _metric(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    if kind == "sparse":  # 80% of items score 0 (ROUGE-2 on short answers)
        return np.where(rng.random(shape) < 0.8, 0.0, rng.beta(2, 5, shape))
    if kind == "very sparse":
        return np.where(rng.random(shape) < 0.95, 0.0, rng.beta(2, 2, shape))
    if kind == "rougeL":
        return rng.beta(2, 3, shape)
    if kind == "high":  # BERTScore-like, near the top of the range
        return rng.beta(30, 3, shape)
    return np.where(rng.random(shape) < 0.5, rng.beta(1, 20, shape), rng.beta(20, 1, shape))  # bimodal


TRUE_MEANS = {"sparse": 0.2 * 2 / 7, "very sparse": 0.05 * 0.5, "rougeL": 0.4, "high": 30 / 33, "bimodal": 0.5}


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["sparse", "very sparse", "rougeL", "high", "bimodal"])
def test_bounded_mean_covers_and_stays_in_range(n: int, kind: str) -> None:
    rng = np.random.default_rng(7 + n)
    true = TRUE_MEANS[kind]
    x = _metric(kind, rng, (TRIALS[n], n))
    hits = 0
    for row in x:
        e = mean_estimate(row, proportion=False)
        assert 0.0 <= e.ci95[0] <= e.ci95[1] <= 1.0
        hits += e.ci95[0] <= true <= e.ci95[1]
    assert hits / TRIALS[n] >= FLOOR - _slack(n), (kind, n, hits / TRIALS[n])


def test_rouge_interval_at_n5_stays_inside_the_range() -> None:
    # the audit's case: a t interval of [0.032, 1.257] for rougeL at n = 5
    e = mean_estimate([0.05, 1.0, 0.9, 0.12, 1.0], proportion=False)
    assert 0.0 <= e.ci95[0] and e.ci95[1] <= 1.0


def _pair(kind: str, rng: np.random.Generator, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    if kind == "sparse":  # both runs score 0 on 70% of items; tuned 0.1 worse elsewhere
        both0 = rng.random(shape) < 0.7
        b = np.where(both0, 0, rng.beta(2, 5, shape))
        return b, np.where(both0, 0, np.clip(rng.beta(2, 5, shape) - 0.1, 0, 1))
    if kind == "one-sided":  # 10% of items collapse to 0, the rest unchanged: skewed differences
        b = rng.beta(5, 2, shape)
        return b, np.where(rng.random(shape) < 0.1, 0.0, b)
    u = rng.beta(2, 3, shape)  # rouge-like with item effects
    return np.clip(u + rng.normal(0, 0.1, shape), 0, 1), np.clip(u - 0.05 + rng.normal(0, 0.1, shape), 0, 1)


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("kind", ["sparse", "one-sided", "rouge"])
def test_paired_continuous_delta_covers(n: int, kind: str) -> None:
    rng = np.random.default_rng(11 + n)
    bb, tt = _pair(kind, rng, (400_000,))
    true = float((tt - bb).mean())
    trials = TRIALS[n] // 2
    b, t = _pair(kind, rng, (trials, n))
    hits = sum(
        (lambda r: r.delta.ci95[0] <= true <= r.delta.ci95[1])(compare_paired(b[i], t[i])) for i in range(trials)
    )
    assert hits / trials >= FLOOR - 0.22 / np.sqrt(trials), (kind, n, hits / trials)


def test_old_percentile_bootstrap_undercovers_at_n20() -> None:
    """The interval this replaced: the paired percentile bootstrap of a 0/1 difference
    (kept as `paired_bootstrap`) covers below 93% at n = 20, Tango's does not."""
    rng = np.random.default_rng(3)
    n, trials = 20, 1000
    big = rng.beta(2, 2, 1_000_000)
    true = float(np.mean(np.clip(big - 0.05, 0, 1) - big))
    q = rng.beta(2, 2, size=(trials, n))
    base = (rng.random((trials, n)) < q).astype(float)
    tuned = (rng.random((trials, n)) < np.clip(q - 0.05, 0, 1)).astype(float)
    old = sum((lambda c: c[0] <= true <= c[1])(paired_bootstrap(tuned[i] - base[i], seed=i, resamples=500).ci95)
              for i in range(trials)) / trials
    new = sum((lambda r: r.delta.ci95[0] <= true <= r.delta.ci95[1])(compare_paired(base[i], tuned[i]))
              for i in range(trials)) / trials
    assert old < FLOOR <= new, (old, new)


# unbounded metrics (no known range) on skewed items: the t interval under-covered; the
# bootstrap-t (never narrower than t) replaced it. Floors per regime are what the
# simulation supports (perf/interval_coverage.py prints the table); lognormal(1) at n = 20
# stays below 93% for every interval of a mean we tried (t 87%, bootstrap-t 92%).
UNBOUNDED = {"exponential": (lambda rng, n: rng.exponential(1.0, n), 1.0, 0.93),
             "lognormal(1)": (lambda rng, n: rng.lognormal(0.0, 1.0, n), float(np.exp(0.5)), 0.90)}


@pytest.mark.parametrize("regime", sorted(UNBOUNDED))
def test_unbounded_skewed_mean_covers_where_t_did_not(regime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """#13: simulated on skewed data at n = 20 (fixed seed), the interval of an unbounded
    mean (single runs; a paired comparison uses it on the differences) covers; the t
    interval it replaced covered 87% for lognormal items (measured here too)."""
    from sfteval.paired import compare_paired
    from sfteval.stats import t_quantile

    import sfteval.stats

    monkeypatch.setattr(sfteval.stats, "BOOT_T_RESAMPLES", 2000, raising=False)  # fast settings (10,000 by default)
    draw, mu, floor = UNBOUNDED[regime]
    rng = np.random.default_rng(31)
    n, trials, hits, t_hits, paired_hits = 20, 400, 0, 0, 0
    tq = t_quantile(0.95, n - 1)
    for k in range(trials):
        x = draw(rng, n) * 10  # outside [0, 1]: no known range, so not the bounded interval
        lo, hi = mean_estimate(x, proportion=False).ci95
        hits += lo <= 10 * mu <= hi
        se = x.std(ddof=1) / np.sqrt(n)
        t_hits += x.mean() - tq * se <= 10 * mu <= x.mean() + tq * se
        if k % 4 == 0:  # the paired comparison: the same interval on the differences (= x here)
            d = compare_paired(np.zeros(n) + 100.0, 100.0 + x).delta.ci95
            paired_hits += d[0] <= 10 * mu <= d[1]
    slack = 0.22 / np.sqrt(trials)
    assert hits / trials >= floor - slack, (hits, t_hits)
    assert paired_hits / (trials // 4) >= floor - 2 * slack, paired_hits
    if regime.startswith("lognormal"):
        assert t_hits / trials < FLOOR - slack and hits > t_hits, (hits, t_hits)  # the old interval under-covers
