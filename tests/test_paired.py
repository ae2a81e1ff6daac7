"""Paired statistics: known values, and CI coverage proven by simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sfteval.paired import (
    bh_qvalues,
    bootstrap_means,
    compare_paired,
    holm,
    mcnemar_exact,
    paired_bootstrap,
    paired_t,
    retention,
    tango_interval,
    tango_pvalue,
    tango_z,
)


def test_mcnemar_exact_known_values() -> None:
    # 10 discordant pairs split 9/1: two-sided binomial p = 2 * (1 + 10) / 2**10
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(5, 5) == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5], [0.5]),
        ([0.4, 0.3], [0.6, 0.6]),
        ([0.9, 0.8, 0.01], [1.0, 1.0, 0.03]),
        ([], []),
    ],
)
def test_holm_table(p: list[float], expected: list[float]) -> None:
    assert holm(p) == pytest.approx(expected)


def test_holm_matches_statsmodels_when_installed() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 0.2, size=12)
    assert holm(p) == pytest.approx(list(multipletests(p, method="holm")[1]))


def test_retention() -> None:
    assert retention(0.5, 0.45) == pytest.approx(0.9)
    assert retention(0.0, 0.3) is None
    assert retention(float("nan"), 0.3) is None


def test_compare_paired_flips_and_test_choice() -> None:
    base = [1, 1, 1, 0, 0, 1]
    tuned = [0, 1, 1, 1, 0, 0]
    r = compare_paired(base, tuned, seed=1, resamples=500)
    assert (r.lost, r.gained, r.binary, r.test) == (2, 1, True, "mcnemar-score")
    assert r.delta.value == pytest.approx(-1 / 6)
    assert r.delta.method == "tango-score"
    assert r.p_exact == pytest.approx(mcnemar_exact(2, 1))
    assert r.retention == pytest.approx((3 / 6) / (4 / 6))
    cont = compare_paired([0.1, 0.5, 0.3], [0.2, 0.4, 0.6], seed=0, resamples=200)
    assert cont.test == "bounded-score" and not cont.binary and cont.lost == 0
    unbounded = compare_paired([1.5, 7.0, 3.0], [2.0, 4.0, 6.5])
    assert unbounded.test == "paired-bootstrap-t" and unbounded.delta.ci95[0] < 0 < unbounded.delta.ci95[1]


def test_bootstrap_is_reproducible_from_its_recorded_seed() -> None:
    d = np.random.default_rng(0).integers(-1, 2, size=300).astype(float)
    a = paired_bootstrap(d, seed=7, resamples=400)
    b = paired_bootstrap(d, seed=7, resamples=400)
    c = paired_bootstrap(d, seed=8, resamples=400)
    assert a == b and a.ci95 != c.ci95


def test_identical_runs_are_not_a_zero_width_interval() -> None:
    """[0, 0] is not a confidence interval: no discordant pair among n items still
    leaves a drop of about 3.8/n points possible (Tango's bound), shrinking with n."""
    r = compare_paired([1, 0, 1, 1], [1, 0, 1, 1], seed=0, resamples=300)
    assert r.p_value == 1.0 and r.delta.ci95[0] < -0.2 and r.delta.ci95[1] > 0.2
    big = compare_paired([1, 0] * 500, [1, 0] * 500)
    assert -0.01 < big.delta.ci95[0] < -0.001 and big.degenerate is None


def test_paired_t_degenerate_cases() -> None:
    assert paired_t(np.zeros(5)) == 1.0
    assert paired_t(np.full(5, 0.2)) == 0.0
    assert math.isnan(paired_t(np.array([0.3])))


def test_multinomial_and_index_resampling_agree_in_distribution() -> None:
    """The fast path (pair-type counts) and plain index resampling give the same spread."""
    rng = np.random.default_rng(1)
    d = rng.choice([-1.0, 0.0, 1.0], p=[0.15, 0.7, 0.15], size=500)
    fast = bootstrap_means(d, seed=2, resamples=4000)
    idx = rng.integers(0, d.size, size=(4000, d.size))
    slow = d[idx].mean(axis=1)
    assert fast.std() == pytest.approx(slow.std(), rel=0.08)
    assert fast.mean() == pytest.approx(slow.mean(), abs=0.003)
    # many distinct values: the index path is taken and still centred on the mean
    cont = rng.normal(0.1, 1.0, size=400)
    reps = bootstrap_means(cont, seed=3, resamples=1000)
    assert reps.mean() == pytest.approx(cont.mean(), abs=0.02)
    assert reps.std() == pytest.approx(cont.std(ddof=1) / math.sqrt(cont.size), rel=0.1)


def test_tango_at_zero_is_mcnemar_and_interval_inverts_the_test() -> None:
    """Cross-checks against statsmodels: Tango's statistic at a difference of 0 is the
    McNemar score statistic, and the interval's ends are where the one-sided p is 2.5%."""
    mcnemar = pytest.importorskip("statsmodels.stats.contingency_tables").mcnemar
    for gained, lost, concordant in ((5, 12, 40), (30, 10, 60), (1, 0, 19), (0, 7, 3)):
        n = gained + lost + concordant
        ref = mcnemar([[concordant, lost], [gained, 0]], exact=False, correction=False)
        assert tango_z(gained, lost, n, 0.0) ** 2 == pytest.approx(ref.statistic)
        lo, hi = tango_interval(gained, lost, n)
        assert tango_pvalue(gained, lost, n, lo, "above") == pytest.approx(0.025, abs=1e-6)
        assert tango_pvalue(gained, lost, n, hi, "below") == pytest.approx(0.025, abs=1e-6)
        # the interval excludes 0 exactly when the McNemar score test rejects at 5%
        r = compare_paired([1] * lost + [0] * gained + [1] * concordant, [0] * lost + [1] * gained + [1] * concordant)
        assert (lo > 0 or hi < 0) == (r.p_value < 0.05)


def test_degenerate_means_constant_at_the_same_value_in_both_runs() -> None:
    assert compare_paired([0] * 50, [0] * 50).degenerate is not None
    assert compare_paired([1] * 49 + [0], [1] * 50).degenerate is not None  # near zero
    # every item flipped 0 -> 1: the largest change there is, not "measured nothing"
    assert compare_paired([0] * 24, [1] * 24).degenerate is None
    assert compare_paired([0, 1] * 25, [0, 1] * 25).degenerate is None


def test_tango_restricted_mle_matches_a_numerical_optimum() -> None:
    from scipy.optimize import minimize_scalar

    b, c, n, d0 = 14, 6, 90, -0.05
    m = n - b - c

    def nll(x: float) -> float:
        return -(b * np.log(x + d0) + c * np.log(x) + m * np.log(1 - 2 * x - d0))

    x = minimize_scalar(nll, bounds=(max(0, -d0) + 1e-9, (1 - d0) / 2 - 1e-9), method="bounded",
                        options={"xatol": 1e-12}).x
    z = (b - c - n * d0) / np.sqrt(n * (2 * x + d0 * (1 - d0)))
    assert tango_z(b, c, n, d0) == pytest.approx(z, rel=1e-6)


def test_bh_qvalues_match_statsmodels() -> None:
    multipletests = pytest.importorskip("statsmodels.stats.multitest").multipletests
    p = np.random.default_rng(4).uniform(0, 0.3, size=15)
    assert bh_qvalues(p) == pytest.approx(list(multipletests(p, method="fdr_bh")[1]))


def _coverage_binary(n: int, trials: int, seed: int) -> float:
    """Share of trials whose 95% CI contains the true mean difference.

    Items differ in difficulty (q ~ Beta(0.6, 0.4)); the tuned model solves each item with
    probability q - 0.03 (clipped), so the true delta is the population mean of that shift.
    """
    rng = np.random.default_rng(seed)
    big_q = rng.beta(0.6, 0.4, size=200_000)
    true_delta = float(np.mean(np.clip(big_q - 0.03, 0, 1) - big_q))
    hits = 0
    for t in range(trials):
        q = rng.beta(0.6, 0.4, size=n)
        base = rng.random(n) < q
        tuned = rng.random(n) < np.clip(q - 0.03, 0, 1)
        ci = paired_bootstrap(tuned.astype(float) - base, seed=t, resamples=1000).ci95
        hits += ci[0] <= true_delta <= ci[1]
    return hits / trials


@pytest.mark.parametrize("n", [200, 1000])
def test_paired_bootstrap_ci_covers_95_percent_binary(n: int) -> None:
    cov = _coverage_binary(n, trials=600, seed=n)
    # 600 trials: the binomial SE at 0.95 is 0.009; accept 0.925..0.975
    assert 0.925 <= cov <= 0.975, cov


def test_paired_bootstrap_ci_covers_95_percent_continuous() -> None:
    rng = np.random.default_rng(11)
    hits, trials, n = 0, 300, 150
    for t in range(trials):
        base = rng.beta(2, 5, size=n)
        tuned = np.clip(base + rng.normal(0.02, 0.1, size=n), 0, 1)
        # the true mean difference of this clipped model, by a large Monte Carlo sample
        if t == 0:
            bb = rng.beta(2, 5, size=400_000)
            true_delta = float(np.mean(np.clip(bb + rng.normal(0.02, 0.1, size=bb.size), 0, 1) - bb))
        ci = paired_bootstrap(tuned - base, seed=t, resamples=800).ci95
        hits += ci[0] <= true_delta <= ci[1]
    assert 0.91 <= hits / trials <= 0.98, hits / trials
