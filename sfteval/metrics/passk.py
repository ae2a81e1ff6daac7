"""pass@k: the unbiased estimator of Chen et al. (2021, "Evaluating Large Language
Models Trained on Code"), in its numerically stable product form.

For one task with n samples of which c pass, pass@k = 1 - C(n-c, k) / C(n, k): the
chance that at least one of k samples drawn without replacement passes. The product
form 1 - prod_{i=n-c+1..n} (1 - k/i) never builds the huge binomials. A benchmark's
pass@k is the mean over tasks; its error bar is the standard error over tasks of the
per-task estimates (a t interval; Wilson when every per-task value is 0 or 1), so it
covers task sampling, not the within-task sampling noise.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from sfteval.stats import mean_estimate
from sfteval.types import Estimate

DEFAULT_KS = (1, 10, 100)


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one task with `n` samples, `c` of them correct."""
    if not 0 <= c <= n:
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def ks_for(n: int, ks: Iterable[int] = DEFAULT_KS) -> list[int]:
    """The k values that make sense with n samples per task (k <= n)."""
    return [k for k in ks if 1 <= k <= n]


def pass_at_k_estimate(ns: Sequence[int], cs: Sequence[int], k: int) -> Estimate:
    """Mean pass@k over tasks with its error bar (tasks with fewer than k samples are an error)."""
    values = [pass_at_k(n, c, k) for n, c in zip(ns, cs, strict=True)]
    est = mean_estimate(values)
    return Estimate(est.value, est.stderr, est.ci95, est.n, f"unbiased pass@k; {est.method} over tasks")
