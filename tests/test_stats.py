"""Error bars checked by simulation: the 95% intervals must cover ~95% of the time,
and the bootstrap stderr must be the statistic's stderr (not std/sqrt(B))."""

from __future__ import annotations

import numpy as np
import pytest

from sfteval.stats import bootstrap_estimate, mean_estimate, wilson_interval


def _exact_coverage(p: float, n: int) -> float:
    from scipy.stats import binom

    return float(sum(binom.pmf(k, n, p) for k in range(n + 1) if wilson_interval(k, n)[0] <= p <= wilson_interval(k, n)[1]))


@pytest.mark.parametrize("n", [30, 100, 500])
def test_wilson_coverage_exact(n: int) -> None:
    # Exact coverage oscillates with p (a property of every binomial interval); Wilson's
    # stays near nominal on average and never collapses the way the Wald interval does.
    grid = np.linspace(0.05, 0.95, 37)
    cover = np.array([_exact_coverage(p, n) for p in grid])
    assert 0.94 <= cover.mean() <= 0.96
    assert cover.min() >= 0.90


def test_t_interval_coverage_for_continuous_means() -> None:
    rng = np.random.default_rng(1)
    hits = sum(
        (lambda e: e.ci95[0] <= 0.3 <= e.ci95[1])(mean_estimate(rng.beta(3, 7, size=50), proportion=False))
        for _ in range(1000)
    )
    assert 0.93 <= hits / 1000 <= 0.97


def test_bootstrap_stderr_matches_the_sampling_distribution() -> None:
    rng = np.random.default_rng(2)
    data = rng.normal(0, 1, size=400)
    est = bootstrap_estimate(lambda idx: float(data[idx].mean()), len(data), seed=0, resamples=2000)
    assert est.stderr == pytest.approx(1 / np.sqrt(400), rel=0.15)  # std/sqrt(B) would be ~45x smaller
    assert est.ci95[0] < est.value < est.ci95[1]
    again = bootstrap_estimate(lambda idx: float(data[idx].mean()), len(data), seed=0, resamples=2000)
    assert again == est  # seeded: reproducible


def test_binary_detection_and_edge_cases() -> None:
    assert mean_estimate([1, 0, 1, 1]).method == "wilson"
    assert mean_estimate([0.0, 0.0], proportion=False).method.startswith("wilson-eff")
    assert mean_estimate([2.5, 7.0], proportion=False).method.startswith("bootstrap-t")  # no known range
    two = mean_estimate([2.5, 7.0], proportion=False)
    assert two.ci95[0] < 2.5 and two.ci95[1] > 7.0  # never narrower than t (t* is all 0 at n = 2)
    assert mean_estimate([]).n == 0
    e = mean_estimate([0] * 30)
    assert e.value == 0 and e.ci95[0] == 0 and e.ci95[1] > 0.05  # zero successes still has an upper bound
