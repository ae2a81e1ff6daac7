"""Study results from votes alone: win rate, per-rater counts and left bias, agreement.

Every function here takes vote rows (dicts with item, rater, choice, tuned_side,
outcome), the same rows `VoteStore.votes` returns and `read_export` reads back from a
CSV or JSONL export, so results are recomputable from an export with no database.

Win rate of tuned over base: ties and "both bad" count one half; each item weighs the
same however many raters saw it, and the percentile bootstrap resamples items (items,
not votes, are the independent units). Left-side bias is balanced over the two side
assignments (a better model does not look like a bias), with a MOVER-Wilson CI.
Agreement: Krippendorff's alpha (nominal, the `krippendorff` package) on unblinded
outcomes over items that two or more raters saw, and raw pairwise agreement.

Not covered: more than two systems per study; agreement CIs (see sfteval.judge's
agreement module for kappa/alpha with intervals).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sfteval.ratings.study import OUTCOMES
from sfteval.stats import bootstrap_estimate, wilson_interval
from sfteval.types import Estimate

Vote = Mapping[str, Any]


@dataclass(frozen=True)
class RaterStats:
    rater: str
    votes: int
    tuned: int
    base: int
    tie: int
    both_bad: int
    left_share: float  # share of decisive (A/B) votes that went to the left side (A)
    left_bias: Estimate | None  # balanced: 0 = no bias, +0.5 = always A; None if a side was never seen


@dataclass(frozen=True)
class Agreement:
    alpha: float | None  # None when undefined (one category only)
    percent: float  # raw pairwise agreement
    n_items: int
    n_raters: int
    method: str = "krippendorff_alpha(nominal)"


@dataclass(frozen=True)
class StudyResults:
    study_id: str
    n_items: int
    n_rated_items: int
    n_votes: int
    counts: dict[str, int]
    win_rate: Estimate
    raters: tuple[RaterStats, ...]
    agreement: Agreement | None


_SCORE = {"tuned": 1.0, "base": 0.0, "tie": 0.5, "both_bad": 0.5}


MACHINE_PREFIX = "judge:"  # votes cast by sfteval.judge: not human, kept apart (sfteval.agreement compares them)


def study_results(store: Any, study_id: str, *, seed: int = 0, resamples: int = 2000,
                  include_machine: bool = False) -> StudyResults:
    """Results of a study in a VoteStore (human raters only unless `include_machine`)."""
    return results_from_votes(study_id, store.votes(study_id), len(store.item_ids(study_id)),
                              seed=seed, resamples=resamples, include_machine=include_machine)


def results_from_votes(study_id: str, votes: Sequence[Vote], n_items: int | None = None, *, seed: int = 0,
                       resamples: int = 2000, include_machine: bool = False) -> StudyResults:
    """Win rate with a bootstrap over items, per-rater counts and bias, agreement.

    Votes of machine raters (`judge:<model>`) are left out unless `include_machine`: a
    human win rate or human agreement that silently counted a judge would mean neither."""
    if not include_machine:
        votes = [v for v in votes if not str(v["rater"]).startswith(MACHINE_PREFIX)]
    counts = {o: sum(v["outcome"] == o for v in votes) for o in OUTCOMES}
    by_item: dict[str, list[float]] = {}
    for v in votes:
        by_item.setdefault(str(v["item"]), []).append(_SCORE[str(v["outcome"])])
    item_means = np.array([np.mean(s) for s in by_item.values()])
    if item_means.size:
        win = bootstrap_estimate(lambda idx: float(item_means[idx].mean()), item_means.size,
                                 seed=seed, resamples=resamples)
    else:
        win = Estimate(math.nan, math.nan, (math.nan, math.nan), 0, "empty")
    raters = tuple(_rater_stats(r, [v for v in votes if v["rater"] == r])
                   for r in sorted({str(v["rater"]) for v in votes}))
    n = len(by_item) if n_items is None else n_items
    return StudyResults(study_id, n, len(by_item), len(votes), counts, win, raters, agreement(votes))


def _rater_stats(rater: str, votes: Sequence[Vote]) -> RaterStats:
    c = {o: sum(v["outcome"] == o for v in votes) for o in OUTCOMES}
    decisive = [v for v in votes if v["choice"] in ("A", "B")]
    left_share = sum(v["choice"] == "A" for v in decisive) / len(decisive) if decisive else math.nan
    return RaterStats(rater, len(votes), c["tuned"], c["base"], c["tie"], c["both_bad"], left_share,
                      left_bias(decisive))


def left_bias(decisive: Sequence[Vote]) -> Estimate | None:
    """Balanced left-side bias from decisive votes, with a MOVER-Wilson 95% CI.

    P(pick A | tuned on A) = q + b and P(pick A | tuned on B) = (1 - q) + b when the rater
    prefers tuned with probability q; the mean of the two minus 1/2 is b whatever q is.
    The CI combines the two Wilson intervals (Zou & Donner's MOVER), which stays honest
    at 0% and 100%, where a normal approximation collapses to a zero-width interval.
    """
    groups = [[v["choice"] == "A" for v in decisive if v["tuned_side"] == s] for s in ("A", "B")]
    if not all(groups):
        return None
    n = [len(g) for g in groups]
    k = [sum(g) for g in groups]
    p = [k[0] / n[0], k[1] / n[1]]
    (l1, u1), (l2, u2) = wilson_interval(k[0], n[0]), wilson_interval(k[1], n[1])
    total = p[0] + p[1]
    lo = total - math.sqrt((p[0] - l1) ** 2 + (p[1] - l2) ** 2)
    hi = total + math.sqrt((u1 - p[0]) ** 2 + (u2 - p[1]) ** 2)
    b = total / 2 - 0.5
    se = math.sqrt(p[0] * (1 - p[0]) / n[0] + p[1] * (1 - p[1]) / n[1]) / 2
    return Estimate(b, se, (lo / 2 - 0.5, hi / 2 - 0.5), n[0] + n[1], "mover-wilson(balanced over sides)")


def agreement(votes: Sequence[Vote]) -> Agreement | None:
    """Krippendorff's alpha (nominal, on unblinded outcomes) over items two or more raters
    saw; raters see different sides, so agreement is on outcomes, never on A/B."""
    by_item: dict[str, dict[str, str]] = {}
    for v in votes:
        by_item.setdefault(str(v["item"]), {})[str(v["rater"])] = str(v["outcome"])
    shared = {i: r for i, r in by_item.items() if len(r) >= 2}
    if not shared:
        return None
    raters = sorted({r for rs in shared.values() for r in rs})
    code = {o: k for k, o in enumerate(OUTCOMES)}
    data = np.full((len(raters), len(shared)), np.nan)
    for j, rs in enumerate(shared.values()):
        for r, o in rs.items():
            data[raters.index(r), j] = code[o]
    agree = total = 0
    for rs in shared.values():
        vals = list(rs.values())
        for a in range(len(vals)):
            for b in range(a + 1, len(vals)):
                agree += vals[a] == vals[b]
                total += 1
    alpha: float | None = None
    if len({o for rs in shared.values() for o in rs.values()}) > 1:
        import krippendorff  # light, but only the results need it

        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return Agreement(alpha, agree / total, len(shared), len(raters))
