"""Studies and what a rater sees: items snapshotted from two runs, sides from a hash.

A *study* pairs two runs (base and tuned) on one benchmark; each item is a prompt with
the two outputs, snapshotted into the database when the study is created, so a run that
is later resumed or re-written cannot change what raters already judged.

Blindness: which side ("A" or "B") shows the tuned model is a pure function of
(study, rater, item) through SHA-256 (`tuned_side`), so a rerun of a page, a refresh or
a second tab never swaps sides, and no random state lives in the UI. `Pair` carries only
the two texts, never which is which; the mapping is applied when the vote is written.

Raters are identified by `rater_key(name)`: Unicode-normalised, case-folded, inner
whitespace collapsed, so "Alice", "alice" and " ALICE " are one rater with one set of
sides and one vote per item.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from sfteval.errors import SftevalError
from sfteval.runfolder import read_results, read_samples, samples_file

Choice = Literal["A", "B", "tie", "both_bad"]
CHOICES: tuple[str, ...] = ("A", "B", "tie", "both_bad")
OUTCOMES: tuple[str, ...] = ("tuned", "base", "tie", "both_bad")
_SEP = "\x1f"  # unit separator: ("a|b", "c") and ("a", "b|c") must hash differently
_SPACES = re.compile(r"\s+")


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
    overlap: int = 1  # with assigned raters: every item goes to at least this many of them


@dataclass(frozen=True)
class StudyInfo:
    study_id: str
    benchmark: str
    base_run: str
    tuned_run: str
    n_items: int
    created: str
    overlap: int = 1


@dataclass(frozen=True)
class Pair:
    """What a rater sees: no model names, no run ids, no hint of which side is which."""

    study_id: str
    item_id: str
    prompt: str
    reference: str
    text_a: str
    text_b: str


def digest(*parts: str) -> bytes:
    return hashlib.sha256(_SEP.join(parts).encode("utf-8")).digest()


def rater_key(name: str) -> str:
    """The identity of a rater typed as `name`: one person, one key, however typed."""
    key = _SPACES.sub(" ", unicodedata.normalize("NFKC", str(name))).strip().casefold()
    if not key:
        raise SftevalError("a rater name is required", field="rater")
    if len(key) > 64:
        raise SftevalError("a rater name is at most 64 characters", field="rater")
    return key


def tuned_side(study_id: str, rater: str, item_id: str) -> str:
    """"A" or "B": where this rater sees the tuned output of this item, forever."""
    return "A" if digest("side", study_id, rater_key(rater), item_id)[0] & 1 else "B"


def outcome_of(choice: str, side_of_tuned: str) -> str:
    if choice in ("tie", "both_bad"):
        return choice
    return "tuned" if choice == side_of_tuned else "base"


def pair_of(study_id: str, rater: str, item: StudyItem) -> Pair:
    if tuned_side(study_id, rater, item.item_id) == "A":
        return Pair(study_id, item.item_id, item.prompt, item.reference, item.tuned_output, item.base_output)
    return Pair(study_id, item.item_id, item.prompt, item.reference, item.base_output, item.tuned_output)


def build_study(
    base_run: str | Path,
    tuned_run: str | Path,
    benchmark: str,
    *,
    study_id: str | None = None,
    limit: int | None = None,
    skip_identical: bool = False,
    overlap: int = 1,
) -> Study:
    """Pair the two runs' samples of `benchmark` by id.

    `limit` keeps a hash-chosen subset (the same every time). The prompt shown is the
    base run's; both runs' prompts may differ by chat template, which reveals no side.
    """
    base_typed, tuned_typed = read_results(base_run), read_results(tuned_run)
    base_res, tuned_res = base_typed.to_dict(), tuned_typed.to_dict()
    base_id = base_typed.run_id or Path(base_run).name
    tuned_id = tuned_typed.run_id or Path(tuned_run).name
    if Path(base_run).resolve() == Path(tuned_run).resolve():
        raise SftevalError("base and tuned are the same run", path=str(base_run), hint="pick two different runs")
    if overlap < 1:
        raise SftevalError(f"overlap must be at least 1, got {overlap}", field="overlap")
    if study_id is not None:
        check_study_name(study_id, base_res, tuned_res)
    base = read_samples(samples_file(base_run, benchmark, base_typed))
    tuned = read_samples(samples_file(tuned_run, benchmark, tuned_typed))
    sid = study_id or f"{benchmark}-{digest(base_id, tuned_id, benchmark, str(limit)).hex()[:8]}"
    items = []
    for item_id, b in base.items():
        t = tuned.get(item_id)
        if t is None:
            continue
        bo, to = b.output, t.output
        if skip_identical and bo.strip() == to.strip():
            continue
        items.append(StudyItem(item_id, b.prompt, "" if b.reference is None else str(b.reference), bo, to))
    if not items:
        raise SftevalError(
            f"the two runs share no item ids on '{benchmark}'", path=str(tuned_run), field=benchmark
        )
    if limit is not None and limit < len(items):
        items = sorted(items, key=lambda it: digest("pick", sid, it.item_id))[:limit]
    return Study(sid, benchmark, str(base_run), str(tuned_run), tuple(items), overlap)


def check_study_name(study_id: str, *results: dict[str, Any]) -> None:
    """Raters see the study name: refuse one that names either model or run."""
    if not study_id.strip():
        raise SftevalError("the study name is empty", field="study")
    for res in results:
        model_path = str((res.get("model") or {}).get("path") or "")
        for name in (res.get("run_id"), res.get("label"), Path(model_path).name if model_path else None):
            if name and len(str(name)) >= 3 and str(name).lower() in study_id.lower():
                raise SftevalError(f"the study name '{study_id}' contains '{name}', which tells raters which "
                                   "model is which", field="study", hint="use a neutral name, e.g. 'chat-round1'")
