"""Agreement between raters of a blind pairwise study: a judge model against the humans,
and the humans among themselves, with intervals; and judge calibration.

Votes are the vote store's rows (item, rater, outcome, seq; `VoteStore.votes` or an
export). Agreement is on unblinded outcomes, in three categories: tuned / base / tie,
with a human's "both bad" counted as a tie (neither output preferred; a judge has no
"both bad"). Machine raters are those named `judge:<model>`.

- Judge vs humans: every human vote on an item the judge voted on is one (judge, human)
  pair. Cohen's kappa and Krippendorff's alpha (nominal, two coders) on those pairs,
  and their 3x3 confusion table (judge rows, human columns).
- Human vs human: Krippendorff's alpha (nominal, any number of raters, missing values)
  over items two or more humans saw, and Cohen's kappa of all ordered pairs of humans
  on an item, pooled.
- Intervals: a percentile cluster bootstrap over items (the pairs of one item share the
  item, so items are resampled, not pairs). Each replicate reweights per-item
  coincidence counts (a multinomial draw over items), so thousands cost milliseconds.
- Calibration: walk the human votes in the order they were cast and report how many
  were needed before the judge-vs-human kappa interval (Poisson bootstrap over items,
  updated vote by vote) was narrower than a chosen width. A study's target width is stored beside the votes (table `judge_calibration`),
  which makes it "judge-calibrated".

Values are cross-checked against sklearn's `cohen_kappa_score` and the `krippendorff`
package in tests/test_agreement.py. Not covered: weighted (ordinal) kappa; more than
one judge per comparison at a time (call once per judge).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from sfteval.types import Estimate

CATEGORIES = ("tuned", "base", "tie")
_CODE = {"tuned": 0, "base": 1, "tie": 2, "both_bad": 2}
MACHINE_PREFIX = "judge:"
Vote = Mapping[str, Any]


def is_machine(rater: str) -> bool:
    return str(rater).startswith(MACHINE_PREFIX)


def human_votes(votes: Sequence[Vote]) -> list[Vote]:
    return [v for v in votes if not is_machine(str(v["rater"]))]


def judges(votes: Sequence[Vote]) -> list[str]:
    return sorted({str(v["rater"]) for v in votes if is_machine(str(v["rater"]))})


@dataclass(frozen=True)
class AgreementStats:
    kappa: Estimate | None  # None when undefined (every pair in one category)
    alpha: Estimate | None
    percent: float  # raw agreement over pairs
    n_pairs: int
    n_items: int
    confusion: dict[str, dict[str, int]]  # row rater's outcome -> column rater's outcome -> pairs
    method: str


# ----------------------------------------------------------------------------- statistics on counts


def kappa_from(conf: np.ndarray) -> np.ndarray:
    """Cohen's kappa of confusion matrices (..., 3, 3); NaN where chance agreement is 1."""
    n = conf.sum(axis=(-2, -1))
    with np.errstate(invalid="ignore", divide="ignore"):
        po = np.trace(conf, axis1=-2, axis2=-1) / n
        pe = (conf.sum(axis=-1) * conf.sum(axis=-2)).sum(axis=-1) / n**2
        return np.where(pe < 1 - 1e-12, (po - pe) / (1 - pe), np.nan)


def alpha_from(coinc: np.ndarray) -> np.ndarray:
    """Krippendorff's nominal alpha from coincidence matrices (..., 3, 3)."""
    n = coinc.sum(axis=(-2, -1))
    nc = coinc.sum(axis=-1)
    disagree = n - np.trace(coinc, axis1=-2, axis2=-1)
    expected = n**2 - (nc**2).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(expected > 0, 1 - (n - 1) * disagree / expected, np.nan)


def _bootstrap(per_item: np.ndarray, stat, seed: int, resamples: int) -> tuple[np.ndarray, float]:
    """Replicates of stat(sum of per-item 3x3 counts) over items resampled with replacement."""
    k = per_item.shape[0]
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(float)
    reps = stat(np.einsum("bi,ijk->bjk", weights, per_item))
    return reps, float(stat(per_item.sum(axis=0)))


def _estimate(per_item: np.ndarray, stat, n_pairs: int, seed: int, resamples: int) -> Estimate | None:
    reps, value = _bootstrap(per_item, stat, seed, resamples)
    if not math.isfinite(value):
        return None
    reps = reps[np.isfinite(reps)]
    if per_item.shape[0] < 2 or reps.size < 2:
        return Estimate(value, math.nan, (math.nan, math.nan), n_pairs, "cluster-bootstrap(items)")
    lo, hi = np.percentile(reps, [2.5, 97.5])
    return Estimate(value, float(reps.std(ddof=1)), (float(lo), float(hi)), n_pairs,
                    f"cluster-bootstrap(items={per_item.shape[0]},B={resamples},seed={seed})")


def _confusion_dict(conf: np.ndarray) -> dict[str, dict[str, int]]:
    return {a: {b: int(conf[i, j]) for j, b in enumerate(CATEGORIES)} for i, a in enumerate(CATEGORIES)}


# ----------------------------------------------------------------------------- judge vs humans


def _by_item(votes: Sequence[Vote]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for v in votes:
        out.setdefault(str(v["item"]), {})[str(v["rater"])] = _CODE[str(v["outcome"])]
    return out


def judge_pairs(votes: Sequence[Vote], judge: str) -> np.ndarray:
    """Per-item confusion counts (items, 3, 3) of (judge, human) pairs."""
    cells = []
    for raters in _by_item(votes).values():
        if judge not in raters:
            continue
        m = np.zeros((3, 3))
        for r, code in raters.items():
            if not is_machine(r):
                m[raters[judge], code] += 1
        if m.sum():
            cells.append(m)
    return np.array(cells).reshape(-1, 3, 3)


def judge_vs_humans(votes: Sequence[Vote], judge: str, *, seed: int = 0, resamples: int = 2000) -> AgreementStats | None:
    per_item = judge_pairs(votes, judge)
    if per_item.shape[0] == 0:
        return None
    return _pairs_stats(per_item, seed, resamples, f"{judge} vs humans: Cohen's kappa, Krippendorff's alpha (nominal)")


def _pairs_stats(per_item: np.ndarray, seed: int, resamples: int, method: str) -> AgreementStats:
    conf = per_item.sum(axis=0)
    n = int(conf.sum())
    kappa = _estimate(per_item, kappa_from, n, seed, resamples)
    alpha = _estimate(per_item + np.swapaxes(per_item, -1, -2), alpha_from, n, seed, resamples)
    return AgreementStats(kappa, alpha, float(np.trace(conf) / n), n, int(per_item.shape[0]), _confusion_dict(conf),
                          method)


# ----------------------------------------------------------------------------- humans among themselves


def human_vs_human(votes: Sequence[Vote], *, seed: int = 0, resamples: int = 2000) -> AgreementStats | None:
    """Krippendorff's alpha over items two or more humans saw (coincidences per item),
    and Cohen's kappa pooled over ordered human pairs on an item."""
    pair_cells, coinc_cells = [], []
    for raters in _by_item(human_votes(votes)).values():
        codes = list(raters.values())
        m_u = len(codes)
        if m_u < 2:
            continue
        pairs = np.zeros((3, 3))
        for a in range(m_u):
            for b in range(m_u):
                if a != b:
                    pairs[codes[a], codes[b]] += 1
        pair_cells.append(pairs)
        coinc_cells.append(pairs / (m_u - 1))  # Krippendorff's coincidences: each value once per other value
    if not pair_cells:
        return None
    per_pair, per_coinc = np.array(pair_cells), np.array(coinc_cells)
    conf = per_pair.sum(axis=0)
    n = int(conf.sum()) // 2  # unordered pairs
    kappa = _estimate(per_pair, kappa_from, n, seed, resamples)
    alpha = _estimate(per_coinc, alpha_from, n, seed, resamples)
    return AgreementStats(kappa, alpha, float(np.trace(conf) / conf.sum()), n, int(per_pair.shape[0]),
                          _confusion_dict(conf // 1), "humans: Krippendorff's alpha (nominal), pooled pairwise kappa")


# ----------------------------------------------------------------------------- calibration


@dataclass(frozen=True)
class Calibration:
    judge: str
    target_width: float
    votes_needed: int | None  # human votes (in casting order) until the kappa CI was narrower; None: not yet
    human_votes: int
    width_now: float | None
    curve: tuple[tuple[int, float, float], ...]  # (human votes so far, kappa CI lo, hi)


def calibration(votes: Sequence[Vote], judge: str, target_width: float, *, seed: int = 0, resamples: int = 1000,
                min_votes: int = 10) -> Calibration:
    """How many human votes were needed before the judge-vs-human kappa's 95% interval was
    narrower than `target_width`. Human votes count in the order they were cast (`seq`);
    only those on items the judge voted on carry information and are counted."""
    judge_codes = {str(v["item"]): _CODE[str(v["outcome"])] for v in votes if str(v["rater"]) == judge}
    humans = sorted((v for v in human_votes(votes) if str(v["item"]) in judge_codes), key=lambda v: int(v.get("seq") or 0))
    index = {i: k for k, i in enumerate(sorted({str(v["item"]) for v in humans}))}
    # Poisson(1) weights per item (the Poisson bootstrap, a standard stand-in for resampling
    # items): drawn once, so each new vote updates every replicate in O(B) and the
    # replicates stay a bootstrap over the items seen so far, whatever their number.
    weights = np.random.default_rng(seed).poisson(1.0, size=(resamples, max(1, len(index)))).astype(float)
    reps = np.zeros((resamples, 3, 3))
    total = np.zeros((3, 3))
    curve: list[tuple[int, float, float]] = []
    needed: int | None = None
    width_now: float | None = None
    for k, v in enumerate(humans, start=1):
        it = str(v["item"])
        j, h = judge_codes[it], _CODE[str(v["outcome"])]
        reps[:, j, h] += weights[:, index[it]]
        total[j, h] += 1
        if k < min_votes or not math.isfinite(float(kappa_from(total[None])[0])):
            continue
        r = kappa_from(reps)
        r = r[np.isfinite(r)]
        if r.size < 2:
            continue
        lo, hi = (float(x) for x in np.percentile(r, [2.5, 97.5]))
        curve.append((k, lo, hi))
        width_now = hi - lo
        if needed is None and width_now < target_width:
            needed = k
    return Calibration(judge, target_width, needed, len(humans), width_now, tuple(curve))


# ----------------------------------------------------------------------------- the study setting


def _table(store: Any) -> Any:
    from sqlalchemy import Column, Float, MetaData, String, Table

    meta = MetaData()
    table = Table("judge_calibration", meta, Column("study", String, primary_key=True), Column("judge", String),
                  Column("width", Float, nullable=False), Column("created", String, nullable=False))
    meta.create_all(store.engine, checkfirst=True)
    return table


def set_calibration(store: Any, study_id: str, width: float, judge: str | None = None) -> None:
    """Make a study judge-calibrated: its results report when the judge's agreement
    interval got narrower than `width` (for `judge`, or each judge when None)."""
    from sqlalchemy import delete, insert

    if not 0 < width <= 2:
        from sfteval.errors import SftevalError

        raise SftevalError(f"the target width must be in (0, 2] (kappa units), got {width}", field="width")
    store.item_ids(study_id)  # refuses an unknown study
    table = _table(store)
    with store.engine.begin() as c:
        c.execute(delete(table).where(table.c.study == study_id))
        c.execute(insert(table).values(study=study_id, judge=judge, width=float(width),
                                       created=datetime.now(timezone.utc).isoformat(timespec="seconds")))


def get_calibration(store: Any, study_id: str) -> tuple[float, str | None] | None:
    """(target width, judge or None) when the study is judge-calibrated, else None."""
    from sqlalchemy import select

    table = _table(store)
    with store.engine.begin() as c:
        row = c.execute(select(table.c.width, table.c.judge).where(table.c.study == study_id)).first()
    return None if row is None else (float(row.width), row.judge)
