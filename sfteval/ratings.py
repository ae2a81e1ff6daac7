"""Blind pairwise human rating: studies, side assignment, a SQLite vote store, results.

A *study* pairs two runs (base and tuned) on one benchmark; each item is a prompt with
the two outputs, snapshotted into the database when the study is created, so a run that
is later resumed or re-written cannot change what raters already judged.

Blindness: which side ("A" or "B") shows the tuned model is a pure function of
(study, rater, item) through SHA-256 (`tuned_side`), so a rerun of a page, a refresh or
a second tab never swaps sides, and no random state lives in the UI. `pair_for` hands
the UI only the two texts, never which is which; the mapping is applied when the vote
is written.

Storage: SQLite in WAL mode, one connection per call (safe from many threads), with
UNIQUE(study, item, rater) so the database, not the UI, refuses a double vote.

Results: win rate of tuned over base (ties and "both bad" count one half), with a
percentile bootstrap over items; per-rater counts; left-side bias per rater, balanced
over the two side assignments so that a better model does not look like a bias; and
Krippendorff's alpha (nominal) on items seen by two or more raters.

Not covered: rater authentication (a rater is whoever types the name), and more than
two systems per study.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from sfteval.errors import SftevalError
from sfteval.runs import load_results, load_samples_by_id, sample_output
from sfteval.stats import bootstrap_estimate, wilson_interval
from sfteval.types import Estimate

Choice = Literal["A", "B", "tie", "both_bad"]
CHOICES: tuple[str, ...] = ("A", "B", "tie", "both_bad")
OUTCOMES: tuple[str, ...] = ("tuned", "base", "tie", "both_bad")
_SEP = "\x1f"  # unit separator: ("a|b", "c") and ("a", "b|c") must hash differently


@dataclass(frozen=True)
class StudyItem:
    item_id: str
    prompt: str
    reference: str
    base_output: str
    tuned_output: str


@dataclass(frozen=True)
class Study:
    study_id: str
    benchmark: str
    base_run: str  # run folder paths, for the organiser; never shown on the Rate page
    tuned_run: str
    items: tuple[StudyItem, ...]


@dataclass(frozen=True)
class StudyInfo:
    study_id: str
    benchmark: str
    base_run: str
    tuned_run: str
    n_items: int
    created: str


@dataclass(frozen=True)
class Pair:
    """What a rater sees: no model names, no run ids, no hint of which side is which."""

    study_id: str
    item_id: str
    prompt: str
    reference: str
    text_a: str
    text_b: str


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


def _digest(*parts: str) -> bytes:
    return hashlib.sha256(_SEP.join(parts).encode("utf-8")).digest()


def tuned_side(study_id: str, rater: str, item_id: str) -> str:
    """"A" or "B": where this rater sees the tuned output of this item, forever."""
    return "A" if _digest("side", study_id, rater, item_id)[0] & 1 else "B"


def outcome_of(choice: str, side_of_tuned: str) -> str:
    if choice in ("tie", "both_bad"):
        return choice
    return "tuned" if choice == side_of_tuned else "base"


def build_study(
    base_run: str | Path,
    tuned_run: str | Path,
    benchmark: str,
    *,
    study_id: str | None = None,
    limit: int | None = None,
    skip_identical: bool = False,
) -> Study:
    """Pair the two runs' samples of `benchmark` by id.

    `limit` keeps a hash-chosen subset (the same every time). The prompt shown is the
    base run's; both runs' prompts may differ by chat template, which reveals no side.
    """
    base_res, tuned_res = load_results(base_run), load_results(tuned_run)
    base_id = str(base_res.get("run_id") or Path(base_run).name)
    tuned_id = str(tuned_res.get("run_id") or Path(tuned_run).name)
    if Path(base_run).resolve() == Path(tuned_run).resolve():
        raise SftevalError("base and tuned are the same run", path=str(base_run), hint="pick two different runs")
    if study_id is not None:
        _check_study_name(study_id, base_res, tuned_res)
    base = load_samples_by_id(base_run, benchmark)
    tuned = load_samples_by_id(tuned_run, benchmark)
    sid = study_id or f"{benchmark}-{_digest(base_id, tuned_id, benchmark, str(limit)).hex()[:8]}"
    items = []
    for item_id, b in base.items():
        t = tuned.get(item_id)
        if t is None:
            continue
        bo, to = sample_output(b), sample_output(t)
        if skip_identical and bo.strip() == to.strip():
            continue
        ref = b.get("reference")
        items.append(StudyItem(item_id, str(b.get("prompt", "")), "" if ref is None else str(ref), bo, to))
    if not items:
        raise SftevalError(
            f"the two runs share no item ids on '{benchmark}'", path=str(tuned_run), field=benchmark
        )
    if limit is not None and limit < len(items):
        items = sorted(items, key=lambda it: _digest("pick", sid, it.item_id))[:limit]
    return Study(sid, benchmark, str(base_run), str(tuned_run), tuple(items))


def _check_study_name(study_id: str, *results: dict) -> None:
    """Raters see the study name: refuse one that names either model or run."""
    if not study_id.strip():
        raise SftevalError("the study name is empty", field="study")
    for res in results:
        model_path = str((res.get("model") or {}).get("path") or "")
        for name in (res.get("run_id"), res.get("label"), Path(model_path).name if model_path else None):
            if name and len(str(name)) >= 3 and str(name).lower() in study_id.lower():
                raise SftevalError(f"the study name '{study_id}' contains '{name}', which tells raters which "
                                   "model is which", field="study", hint="use a neutral name, e.g. 'chat-round1'")


_SCHEMA = """
CREATE TABLE IF NOT EXISTS studies (
  study TEXT PRIMARY KEY, benchmark TEXT NOT NULL, base_run TEXT NOT NULL,
  tuned_run TEXT NOT NULL, created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
  study TEXT NOT NULL REFERENCES studies(study), item TEXT NOT NULL, prompt TEXT NOT NULL,
  reference TEXT NOT NULL, base_output TEXT NOT NULL, tuned_output TEXT NOT NULL,
  PRIMARY KEY (study, item));
CREATE TABLE IF NOT EXISTS votes (
  seq INTEGER PRIMARY KEY AUTOINCREMENT, study TEXT NOT NULL, item TEXT NOT NULL,
  rater TEXT NOT NULL, choice TEXT NOT NULL CHECK (choice IN ('A','B','tie','both_bad')),
  tuned_side TEXT NOT NULL CHECK (tuned_side IN ('A','B')),
  outcome TEXT NOT NULL CHECK (outcome IN ('tuned','base','tie','both_bad')),
  created TEXT NOT NULL,
  FOREIGN KEY (study, item) REFERENCES items(study, item),
  UNIQUE (study, item, rater));
"""


class VoteStore:
    """Studies and votes in one SQLite file. Every method opens its own connection, so
    one store object may be used from many threads (and many Streamlit sessions)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._conn() as c:
            c.execute("PRAGMA journal_mode=WAL")
            c.executescript(_SCHEMA)

    @contextmanager
    def _conn(self) -> Iterator[sqlite3.Connection]:
        try:
            conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as e:
            raise SftevalError(f"cannot open the ratings database: {e}", path=str(self.path)) from e
        try:
            conn.execute("PRAGMA foreign_keys=ON")
            conn.execute("PRAGMA synchronous=FULL")  # a vote is on disk when the call returns
            yield conn
        finally:
            conn.close()

    # -- studies -------------------------------------------------------------------
    def create_study(self, study: Study) -> bool:
        """Store a study and its items; False if the same study already exists.

        A different study under an existing id is refused: votes refer to its items."""
        now = _now()
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            try:
                row = c.execute("SELECT base_run, tuned_run, benchmark FROM studies WHERE study=?",
                                (study.study_id,)).fetchone()
                if row is not None:
                    have = {r[0] for r in c.execute("SELECT item FROM items WHERE study=?", (study.study_id,))}
                    if tuple(row) != (study.base_run, study.tuned_run, study.benchmark) or have != {
                        it.item_id for it in study.items
                    }:
                        raise SftevalError(f"study '{study.study_id}' already exists with other runs or items",
                                           path=str(self.path), field="study", hint="choose another study name")
                    c.execute("ROLLBACK")
                    return False
                c.execute("INSERT INTO studies VALUES (?,?,?,?,?)",
                          (study.study_id, study.benchmark, study.base_run, study.tuned_run, now))
                c.executemany("INSERT INTO items VALUES (?,?,?,?,?,?)", [
                    (study.study_id, it.item_id, it.prompt, it.reference, it.base_output, it.tuned_output)
                    for it in study.items])
                c.execute("COMMIT")
                return True
            except BaseException:
                if c.in_transaction:
                    c.execute("ROLLBACK")
                raise

    def studies(self) -> list[StudyInfo]:
        with self._conn() as c:
            rows = c.execute(
                "SELECT s.study, s.benchmark, s.base_run, s.tuned_run, COUNT(i.item), s.created "
                "FROM studies s LEFT JOIN items i ON i.study = s.study GROUP BY s.study ORDER BY s.created DESC"
            ).fetchall()
        return [StudyInfo(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    def item_ids(self, study_id: str) -> list[str]:
        with self._conn() as c:
            ids = [r[0] for r in c.execute("SELECT item FROM items WHERE study=?", (study_id,))]
        if not ids:
            raise SftevalError(f"unknown study '{study_id}'", path=str(self.path), field="study")
        return ids

    # -- what a rater sees ---------------------------------------------------------
    def order_for(self, study_id: str, rater: str) -> list[str]:
        """This rater's item order: shuffled per rater (no shared order effects), stable."""
        return sorted(self.item_ids(study_id), key=lambda i: _digest("order", study_id, rater, i))

    def voted_items(self, study_id: str, rater: str) -> set[str]:
        with self._conn() as c:
            return {r[0] for r in c.execute("SELECT item FROM votes WHERE study=? AND rater=?", (study_id, rater))}

    def next_item(self, study_id: str, rater: str) -> str | None:
        """The first item in this rater's order without their vote: resume = ask again."""
        done = self.voted_items(study_id, rater)
        return next((i for i in self.order_for(study_id, rater) if i not in done), None)

    def pair_for(self, study_id: str, rater: str, item_id: str) -> Pair:
        with self._conn() as c:
            row = c.execute("SELECT prompt, reference, base_output, tuned_output FROM items WHERE study=? AND item=?",
                            (study_id, item_id)).fetchone()
        if row is None:
            raise SftevalError(f"study '{study_id}' has no item '{item_id}'", path=str(self.path), field="item")
        prompt, reference, base_out, tuned_out = row
        if tuned_side(study_id, rater, item_id) == "A":
            return Pair(study_id, item_id, prompt, reference, tuned_out, base_out)
        return Pair(study_id, item_id, prompt, reference, base_out, tuned_out)

    # -- votes ---------------------------------------------------------------------
    def record_vote(self, study_id: str, item_id: str, rater: str, choice: str) -> bool:
        """Write one vote at once. False (and nothing written) if this rater already
        voted on this item: the UNIQUE constraint decides, so racing tabs cannot both win."""
        rater = _check_rater(rater)
        if choice not in CHOICES:
            raise SftevalError(f"unknown choice {choice!r}; expected one of {', '.join(CHOICES)}", field="choice")
        side = tuned_side(study_id, rater, item_id)
        with self._conn() as c:
            try:
                cur = c.execute(
                    "INSERT INTO votes (study, item, rater, choice, tuned_side, outcome, created) "
                    "VALUES (?,?,?,?,?,?,?) ON CONFLICT (study, item, rater) DO NOTHING",
                    (study_id, item_id, rater, choice, side, outcome_of(choice, side), _now()),
                )
            except sqlite3.IntegrityError as e:  # the foreign key: no such study/item
                raise SftevalError(f"study '{study_id}' has no item '{item_id}'", path=str(self.path),
                                   field="item") from e
            return cur.rowcount == 1

    def undo_last(self, study_id: str, rater: str) -> str | None:
        """Delete this rater's most recent vote in the study; returns its item id."""
        with self._conn() as c:
            c.execute("BEGIN IMMEDIATE")
            row = c.execute("SELECT seq, item FROM votes WHERE study=? AND rater=? ORDER BY seq DESC LIMIT 1",
                            (study_id, rater)).fetchone()
            if row is not None:
                c.execute("DELETE FROM votes WHERE seq=?", (row[0],))
            c.execute("COMMIT")
        return None if row is None else str(row[1])

    def votes(self, study_id: str) -> list[dict[str, str | int]]:
        cols = ("seq", "study", "item", "rater", "choice", "tuned_side", "outcome", "created")
        with self._conn() as c:
            rows = c.execute(f"SELECT {', '.join(cols)} FROM votes WHERE study=? ORDER BY seq", (study_id,))
            return [dict(zip(cols, r)) for r in rows]

    def export_csv(self, study_id: str) -> str:
        """All votes of a study as CSV text (one row per vote, with the unblinded outcome)."""
        buf = io.StringIO()
        rows = self.votes(study_id)
        w = csv.DictWriter(buf, fieldnames=["seq", "study", "item", "rater", "choice", "tuned_side", "outcome",
                                            "created"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()


def _check_rater(rater: str) -> str:
    rater = rater.strip()
    if not rater:
        raise SftevalError("a rater name is required", field="rater")
    return rater


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


_SCORE = {"tuned": 1.0, "base": 0.0, "tie": 0.5, "both_bad": 0.5}


def study_results(store: VoteStore, study_id: str, *, seed: int = 0, resamples: int = 2000) -> StudyResults:
    """Win rate with a bootstrap over items, per-rater counts and bias, agreement."""
    n_items = len(store.item_ids(study_id))
    votes = store.votes(study_id)
    counts = {o: sum(v["outcome"] == o for v in votes) for o in OUTCOMES}
    by_item: dict[str, list[float]] = {}
    for v in votes:
        by_item.setdefault(str(v["item"]), []).append(_SCORE[str(v["outcome"])])
    # Each item weighs the same however many raters saw it; the bootstrap resamples items
    # because items, not votes, are the independent units.
    item_means = np.array([np.mean(s) for s in by_item.values()])
    if item_means.size:
        win = bootstrap_estimate(lambda idx: float(item_means[idx].mean()), item_means.size,
                                 seed=seed, resamples=resamples)
    else:
        win = Estimate(math.nan, math.nan, (math.nan, math.nan), 0, "empty")
    raters = tuple(_rater_stats(r, [v for v in votes if v["rater"] == r])
                   for r in sorted({str(v["rater"]) for v in votes}))
    return StudyResults(study_id, n_items, len(by_item), len(votes), counts, win, raters, agreement(votes))


def _rater_stats(rater: str, votes: list[dict[str, str | int]]) -> RaterStats:
    c = {o: sum(v["outcome"] == o for v in votes) for o in OUTCOMES}
    decisive = [v for v in votes if v["choice"] in ("A", "B")]
    left_share = sum(v["choice"] == "A" for v in decisive) / len(decisive) if decisive else math.nan
    return RaterStats(rater, len(votes), c["tuned"], c["base"], c["tie"], c["both_bad"], left_share,
                      left_bias(decisive))


def left_bias(decisive: list[dict[str, str | int]]) -> Estimate | None:
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


def agreement(votes: list[dict[str, str | int]]) -> Agreement | None:
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
        import krippendorff  # light, but only the results view needs it

        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    return Agreement(alpha, agree / total, len(shared), len(raters))
