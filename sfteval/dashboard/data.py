"""What the dashboard pages read, and the caches in front of it.

Settings come from the environment (`sfteval dashboard` sets them): SFTEVAL_REPORTS
(the reports folder, default `reports`) and SFTEVAL_RATINGS_DB (the rating database,
default `<reports>/ratings.sqlite3`).

Cache keys include each file's (mtime, size), so a run that finishes or a comparison
that is re-written shows up on the next rerun without restarting the app. The pure
functions here (`pair_samples`, `filter_pairs`) are what the Samples page spends its
time in; perf/dashboard_samples.py times them.
"""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from sfteval import runfolder
from sfteval.runfolder import SampleLine
from sfteval.ratings import VoteStore

STATUS_ORDER = ("regression", "improvement", "same", "unscored", "only base", "only tuned")
_TEXT_COLUMNS = ("prompt", "reference", "base_output", "tuned_output", "base_answer", "tuned_answer")


@dataclass(frozen=True)
class Settings:
    reports: Path
    db: Path


def settings() -> Settings:
    reports = Path(os.environ.get("SFTEVAL_REPORTS") or "reports").expanduser()
    db = Path(os.environ.get("SFTEVAL_RATINGS_DB") or reports / "ratings.sqlite3").expanduser()
    return Settings(reports, db)


def stamp(path: str | Path) -> tuple[int, int]:
    """(mtime_ns, size) of a file, (0, 0) when absent: part of every cache key."""
    try:
        st_ = Path(path).stat()
    except OSError:
        return (0, 0)
    return (st_.st_mtime_ns, st_.st_size)


def _runs_stamp(reports: Path) -> tuple[tuple[str, tuple[int, int]], ...]:
    root = runfolder.runs_root(reports)
    if not root.is_dir():
        return ()
    return tuple(sorted((d.name, stamp(d / "results.json")) for d in root.iterdir() if d.is_dir()))


# `key` is unused in the bodies: it is there so the cache sees the files' stamps.
@st.cache_data(show_spinner=False, max_entries=8)
def _scan_runs(reports: str, key: Any) -> runfolder.RunScan:
    return runfolder.scan_runs(reports)


def list_runs(reports: Path) -> list[runfolder.RunInfo]:
    """The readable runs; each unreadable one is named on the page with the reason."""
    scan = _scan_runs(str(reports), _runs_stamp(reports))
    for u in scan.unreadable:
        st.warning(f"Skipped an unreadable run: {u.reason}")
    return list(scan.runs)


@st.cache_data(show_spinner=False, max_entries=32)
def _results(run_dir: str, key: Any) -> dict[str, Any]:
    return runfolder.read_results(run_dir).to_dict()


@st.cache_data(show_spinner=False, max_entries=32)
def _typed_results(run_dir: str, key: Any) -> runfolder.RunResults:
    return runfolder.read_results(run_dir)


def results(run_dir: Path) -> dict[str, Any]:
    return _results(str(run_dir), stamp(Path(run_dir) / "results.json"))


@st.cache_data(show_spinner=False, max_entries=16)
def _comparison(path: str, key: Any) -> runfolder.Comparison:
    return runfolder.read_comparison(path)


@st.cache_data(show_spinner=False, max_entries=16)
def _sweep(path: str, key: Any) -> dict[str, Any]:
    return runfolder.read_sweep(path).to_dict()


def comparison(path: Path) -> runfolder.Comparison:
    """A comparison.json, typed (pages read its records' attributes)."""
    return _comparison(str(path), stamp(path))


def sweep(path: Path) -> dict[str, Any]:
    return _sweep(str(path), stamp(path))


@st.cache_resource(show_spinner=False)
def vote_store(db: str) -> VoteStore:
    return VoteStore(db)


def metric_names(run_dir: Path, benchmark: str) -> list[str]:
    """The benchmark's metrics, primary first."""
    info = _typed_results(str(run_dir), stamp(Path(run_dir) / "results.json")).benchmarks.get(benchmark)
    if info is None:
        return []
    names = list(info.metrics)
    primary = info.primary_metric
    if primary in names:
        names.remove(primary)
        names.insert(0, primary)
    return names


def _score(sample: SampleLine | None, metric: str) -> float | None:
    if sample is None:
        return None
    value = sample.scores.get(metric)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _status(b: float | None, t: float | None, in_base: bool, in_tuned: bool) -> str:
    if not in_tuned:
        return "only base"
    if not in_base:
        return "only tuned"
    if b is None or t is None:
        return "unscored"
    return "regression" if t < b else "improvement" if t > b else "same"


def pair_samples(base_dir: str | Path, tuned_dir: str | Path, benchmark: str, metric: str) -> pd.DataFrame:
    """One row per item id in either run, regressions first (largest drop first), then
    improvements (largest gain first), then unchanged, unscored and unpaired items."""
    # Bulk-loading tens of thousands of dicts triggers the cyclic GC over and over; none
    # of them form cycles, so it is paused while reading (a known, measurable win).
    gc.disable()
    try:
        base = runfolder.read_samples(runfolder.samples_file(base_dir, benchmark))
        tuned = runfolder.read_samples(runfolder.samples_file(tuned_dir, benchmark))
    finally:
        gc.enable()
    ids = list(base) + [i for i in tuned if i not in base]
    cols: dict[str, list[Any]] = {k: [] for k in (
        "id", "status", "delta", "base_score", "tuned_score", "base_answer", "tuned_answer", "reference",
        "prompt", "base_output", "tuned_output", "base_finish", "tuned_finish")}
    for i in ids:
        b, t = base.get(i), tuned.get(i)
        bs, ts = _score(b, metric), _score(t, metric)
        either = b if b is not None else t
        cols["id"].append(i)
        cols["status"].append(_status(bs, ts, b is not None, t is not None))
        cols["delta"].append(None if bs is None or ts is None else ts - bs)
        cols["base_score"].append(bs)
        cols["tuned_score"].append(ts)
        cols["base_answer"].append(_text(b and b.answer))
        cols["tuned_answer"].append(_text(t and t.answer))
        cols["reference"].append(_text(either and either.reference))
        cols["prompt"].append(either.prompt if either is not None else "")
        cols["base_output"].append(b.output if b is not None else "")
        cols["tuned_output"].append(t.output if t is not None else "")
        cols["base_finish"].append(b.finish_reason if b is not None else "")
        cols["tuned_finish"].append(t.finish_reason if t is not None else "")
    # Text stays in object columns: pandas 3 would otherwise copy every prompt into an
    # Arrow string column up front (tens of MB for a 10k-item run) for no gain here.
    numeric = ("delta", "base_score", "tuned_score")
    df = pd.DataFrame({k: pd.Series(v, dtype="float64" if k in numeric else object) for k, v in cols.items()})
    df["status"] = pd.Categorical(df["status"], categories=list(STATUS_ORDER), ordered=True)
    # Within regressions the most negative delta first; within improvements the largest.
    order_key = df["delta"].astype(float).where(df["status"] != "improvement", -df["delta"].astype(float))
    df = df.assign(_k=order_key.fillna(0.0)).sort_values(["status", "_k"], kind="stable").drop(columns="_k")
    return df.reset_index(drop=True)


def _text(value: Any) -> str:
    return "" if value is None else str(value)


# cache_resource, not cache_data: a 10k-sample frame is tens of MB and cache_data would
# unpickle a copy on every rerun. Callers never mutate it (filters return new frames).
@st.cache_resource(show_spinner=False, max_entries=4)
def _pairs(base_dir: str, tuned_dir: str, benchmark: str, metric: str, key: Any) -> pd.DataFrame:
    return pair_samples(base_dir, tuned_dir, benchmark, metric)


def pairs(base_dir: Path, tuned_dir: Path, benchmark: str, metric: str) -> pd.DataFrame:
    key = (stamp(runfolder.samples_file(base_dir, benchmark)), stamp(runfolder.samples_file(tuned_dir, benchmark)))
    return _pairs(str(base_dir), str(tuned_dir), benchmark, metric, key)


def filter_pairs(df: pd.DataFrame, *, text: str = "", ids: str = "", statuses: list[str] | None = None) -> pd.DataFrame:
    """Rows matching every given filter: `text` (case-insensitive, in any text column),
    `ids` (comma- or space-separated exact ids), `statuses`."""
    mask = pd.Series(True, index=df.index)
    if statuses is not None:
        mask &= df["status"].isin(statuses)
    wanted = [x for x in ids.replace(",", " ").split() if x]
    if wanted:
        mask &= df["id"].isin(wanted)
    if text.strip():
        needle = text.strip().lower()
        hay = haystack(df)
        mask &= pd.Series([needle in h for h in hay], index=df.index)
    return df[mask]


_HAYSTACKS: dict[int, tuple[pd.DataFrame, list[str]]] = {}


def haystack(df: pd.DataFrame) -> list[str]:
    """Lower-cased text of each row, built once per frame (frames are cached and never
    mutated, so the frame's identity is a sound key; the frame is held to keep it alive)."""
    hit = _HAYSTACKS.get(id(df))
    if hit is not None and hit[0] is df:
        return hit[1]
    if len(_HAYSTACKS) > 8:
        _HAYSTACKS.clear()
    hay = ["\x00".join(parts).lower() for parts in zip(*(df[c].tolist() for c in _TEXT_COLUMNS))]
    _HAYSTACKS[id(df)] = (df, hay)
    return hay
