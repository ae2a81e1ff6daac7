"""Selection-aware statistics over a checkpoint sweep: which checkpoint to keep, and
what may be claimed about it, without the winner's curse.

Picking the best of K checkpoints and reporting its interval on the same items is
biased (the kept checkpoint's CI covered 83-91%, +2 to +5.7 points high), and "its CI
overlaps the best's" is not an equivalence test. Covered, on per-item scores
(K checkpoints x n aligned items):
- sample splitting: items are split by a hash of their id into a `select` half and a
  `report` half (the split is recorded: rule, sizes, a digest of each half's ids); the
  checkpoint is chosen on `select` and its value and interval are reported on `report`,
  where the choice cannot have flattered it (`choose_on_split`: sweep.json's "best" and
  the sweep diagnosis's "keep" are this one choice). With K equal checkpoints (A/A),
  base-vs-best on all items claimed a gain 12.8% of the time (nominal 2.5%, one-sided);
  on the report half 2.8% (tests/test_selection.py, 400 trials, K = 8, n = 400);
- simultaneous intervals: every checkpoint's interval at level 1 - 0.05/K (Bonferroni),
  so all K hold together with >= 95% probability;
- "peak significant": a paired test of last vs best (Tango / bounded score, one-sided),
  Bonferroni-corrected for the K - 1 checkpoints that could have been "best";
- "earliest equivalent": the earliest checkpoint whose paired difference from the best
  passes TOST with a stated margin (both one-sided tests at alpha / K, so a search over
  K checkpoints claims a checkpoint truly >= margin worse with probability <= alpha).

Not covered: choosing by a training-log column, and adaptive (sequential) sweeps.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from sfteval.paired import compare_paired, one_sided_p
from sfteval.stats import bounded_interval, mean_estimate, wilson_interval

ALPHA = 0.05
DEFAULT_EQUIVALENCE_MARGIN = 0.02  # metric units: "as good as the best, within 2 points"
SPLIT_METHOD = "sha256(item id) first byte even -> select, odd -> report"


@functools.lru_cache(maxsize=1 << 17)  # a sweep asks again for the same ids after every checkpoint
def split_of(item_id: str) -> str:
    return "select" if hashlib.sha256(item_id.encode()).digest()[0] % 2 == 0 else "report"


def _ids_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()


def split_record(ids: Sequence[str]) -> dict[str, Any]:
    """Which items were used for what: the rule, each half's size and a digest of its
    sorted ids (sha256 of the ids joined by newlines), so a reader can check the halves."""
    sel = [i for i in ids if split_of(i) == "select"]
    rep = [i for i in ids if split_of(i) == "report"]
    return {"method": SPLIT_METHOD, "select_n": len(sel), "report_n": len(rep),
            "select_ids_sha256": _ids_digest(sel), "report_ids_sha256": _ids_digest(rep)}


def choose_on_split(steps: Sequence[int], ids: Sequence[str], scores: np.ndarray, mode: str = "max",
                    proportion: bool | None = None) -> dict[str, Any] | None:
    """The checkpoint chosen on the `select` half (best mean; ties to the earliest) with
    its value and 95% interval on the `report` half, where the choice cannot have
    flattered it; None when either half has fewer than 2 items. `scores[k, i]` is
    checkpoint k's score on ids[i]; `proportion` is passed to `mean_estimate`."""
    sides = np.array([split_of(i) for i in ids])
    sel, rep = sides == "select", sides == "report"
    if sel.sum() < 2 or rep.sum() < 2:
        return None
    chosen = _best(scores[:, sel].mean(axis=1), mode)
    est = mean_estimate(scores[chosen, rep], proportion=proportion)
    return {"index": chosen, "step": int(steps[chosen]), "chosen_on": "select", "reported_on": "report",
            "value": est.value, "ci95": list(est.ci95), "n": est.n, "method": est.method,
            "select_value": float(scores[chosen, sel].mean()), "split": split_record(list(ids))}


def _best(values: np.ndarray, mode: str) -> int:
    """Index of the best mean; ties go to the earliest checkpoint."""
    sign = 1.0 if mode == "max" else -1.0
    return int(np.argmax(sign * values))


def _interval(x: np.ndarray, level: float) -> tuple[float, float]:
    """The same interval families as single runs (`sfteval.stats`), at any level."""
    from scipy.special import ndtri

    from sfteval.stats import T_GRID, studentized_bootstrap, t_quantile

    if x.size == 0:
        return (float("nan"), float("nan"))
    if bool(np.all((x == 0) | (x == 1))):
        return wilson_interval(float(x.sum()), x.size, float(-ndtri((1 - level) / 2)))
    if bool(np.all((x >= 0) & (x <= 1))):
        lo, hi, _ = bounded_interval(x, 0.0, 1.0, level)
        return (lo, hi)
    # unbounded: the bootstrap-t of single runs (t under-covered skewed data), its t*
    # quantiles read at this level and kept no nearer 0 than t's (beyond the kept grid too)
    st = studentized_bootstrap(x)
    if not st.se > 0:
        return (st.mean, st.mean) if np.isfinite(st.mean) and x.size > 1 else (float("nan"), float("nan"))
    a, t = (1 - level) / 2, t_quantile(level, x.size - 1)
    q_lo = min(float(np.interp(a, T_GRID, st.quantiles)), -t)
    q_hi = max(float(np.interp(1 - a, T_GRID, st.quantiles)), t)
    return (st.mean - q_hi * st.se, st.mean - q_lo * st.se)


def selection_stats(steps: Sequence[int], ids: Sequence[str], scores: np.ndarray, mode: str = "max",
                    margin: float = DEFAULT_EQUIVALENCE_MARGIN, alpha: float = ALPHA) -> dict[str, Any]:
    """All of the module docstring's claims for one sweep; `scores[k, i]` is checkpoint
    k's score on item ids[i] (checkpoints in step order)."""
    k_count, n = scores.shape
    means = scores.mean(axis=1)
    best = _best(means, mode)
    level = 1 - alpha / k_count
    simultaneous = [list(_interval(scores[k], level)) for k in range(k_count)]
    sides = np.array([split_of(i) for i in ids])
    sel, rep = sides == "select", sides == "report"
    out: dict[str, Any] = {
        "k": k_count, "n": n, "alpha": alpha,
        "simultaneous": {"level": level, "method": "Bonferroni over K checkpoints", "ci": simultaneous},
        "split": {"method": SPLIT_METHOD, "select_n": int(sel.sum()), "report_n": int(rep.sum())},
    }
    keep = choose_on_split(steps, ids, scores, mode)  # the same choice sweep.json records as "best"
    if keep is not None:
        out["keep"] = {k: v for k, v in keep.items() if k not in ("index", "split", "n")}
    sign = 1.0 if mode == "max" else -1.0
    last = k_count - 1
    peak: dict[str, Any] = {"step": int(steps[best]), "value": float(means[best]), "last_step": int(steps[last]),
                            "last_value": float(means[last]), "before_end": best != last, "significant": False,
                            "p_corrected": None, "correction": f"Bonferroni x {max(k_count - 1, 1)}"}
    if best != last:
        r = compare_paired(scores[best], scores[last])  # delta = last - best
        p = one_sided_p(r.inference, 0.0, "below" if sign > 0 else "above")
        p_corr = min(1.0, p * (k_count - 1))
        peak.update(p_corrected=p_corr, significant=bool(p_corr < alpha / 2))
    out["peak"] = peak
    out["earliest_equivalent"] = _earliest_equivalent(steps, scores, best, sign, margin, alpha)
    return out


def _earliest_equivalent(steps: Sequence[int], scores: np.ndarray, best: int, sign: float, margin: float,
                         alpha: float) -> dict[str, Any]:
    k_count = scores.shape[0]
    a = alpha / k_count
    result: dict[str, Any] = {"margin": margin, "alpha_per_test": a, "method": "TOST on the paired difference",
                              "step": None}
    for k in range(k_count):
        if k == best:
            result.update(step=int(steps[k]), p_tost=0.0, note="the best checkpoint itself")
            return result
        r = compare_paired(scores[best], scores[k])  # delta = k - best, in the metric's direction below
        inf = r.inference
        p_low = one_sided_p(inf, -sign * margin, "above" if sign > 0 else "below")
        p_high = one_sided_p(inf, sign * margin, "below" if sign > 0 else "above")
        p = max(p_low, p_high)
        if p < a:
            result.update(step=int(steps[k]), p_tost=float(p), delta=float(r.delta.value))
            return result
    return result
