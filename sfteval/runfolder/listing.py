"""Finding run folders, comparisons and sweeps under a reports folder, at a glance.

Covered: `OUT/runs/<run_id>/` (see docs/run-format.md), `**/comparison.json`,
`OUT/sweeps/<key>/sweep.json`, and the benchmarks two runs share. A run folder without
results.json but with samples is a run still in progress (or crashed): listed as
incomplete rather than skipped. A folder with neither (a run that died before its first
sample) is no run. An unreadable run is skipped with a warning naming the file and why
(`scan_runs` returns them for a page to show).

Not covered: reading a run's contents (`sfteval.runfolder.read`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

from sfteval.errors import SftevalError
from sfteval.runfolder.read import RESULTS_NAME, read_results, samples_file
from sfteval.runfolder.records import BenchmarkResult


@dataclass(frozen=True)
class MetricSummary:
    """A benchmark's headline number, as shown in run listings."""

    benchmark: str
    metric: str
    value: float
    ci95: tuple[float, float]
    n: int


@dataclass(frozen=True)
class RunInfo:
    """One run folder at a glance. `complete` is False while results.json is missing."""

    run_id: str
    path: Path
    label: str
    created: str
    finished: str
    model: str
    backend: str
    benchmarks: tuple[str, ...]
    headline: tuple[MetricSummary, ...]
    complete: bool


@dataclass(frozen=True)
class Unreadable:
    """A run folder a listing skipped: the file at fault and why."""

    path: Path
    reason: str


@dataclass(frozen=True)
class RunScan:
    runs: tuple[RunInfo, ...]
    unreadable: tuple[Unreadable, ...]


# What a damaged file can raise on its way through a reader; anything else is a bug.
READ_ERRORS = (SftevalError, OSError, ValueError, TypeError, AttributeError, KeyError, IndexError)


def runs_root(reports: str | Path) -> Path:
    """`reports/runs` when present, else `reports` itself (a folder of run folders)."""
    reports = Path(reports)
    return reports / "runs" if (reports / "runs").is_dir() else reports


def _headline(entry: BenchmarkResult) -> MetricSummary | None:
    est = entry.primary()
    if est is None or not math.isfinite(est.value):
        return None
    return MetricSummary(entry.name, str(entry.primary_metric), est.value, est.ci95, est.n)


def run_info(run_dir: str | Path) -> RunInfo:
    """Summarise one run folder; a folder without results.json is an incomplete run."""
    run_dir = Path(run_dir)
    if not (run_dir / RESULTS_NAME).is_file():
        benches = tuple(sorted(p.stem for p in (run_dir / "samples").glob("*.jsonl")))
        return RunInfo(run_dir.name, run_dir, "", "", "", "", "", benches, (), False)
    res = read_results(run_dir)
    heads = tuple(h for e in res.benchmarks.values() if (h := _headline(e)) is not None)
    return RunInfo(
        run_id=res.run_id or run_dir.name, path=run_dir, label=res.label, created=res.created,
        finished=res.finished, model=str(res.model.path or res.model.kind or ""), backend=res.backend_name,
        benchmarks=tuple(res.benchmarks), headline=heads, complete=True,
    )


def is_run_folder(path: str | Path) -> bool:
    """results.json, or at least one samples file (a run in progress or stopped)."""
    path = Path(path)
    return (path / RESULTS_NAME).is_file() or any((path / "samples").glob("*.jsonl"))


def is_unfinished_run(path: str | Path) -> bool:
    """A folder `sfteval run` left without results.json: samples, a progress record or a
    lock of its own (a run still going, or killed). Never a checkpoint to evaluate."""
    path = Path(path)
    return not (path / RESULTS_NAME).is_file() and any(
        (path / name).exists() for name in ("samples", "progress.json", ".lock"))


def scan_runs(reports: str | Path) -> RunScan:
    """Every readable run folder under `reports`, newest first (incomplete runs last),
    and the unreadable ones with the reason."""
    root = runs_root(reports)
    if not root.is_dir():
        return RunScan((), ())
    found, bad = [], []
    for d in sorted(root.iterdir()):
        if not d.is_dir() or not is_run_folder(d):
            continue
        try:
            found.append(run_info(d))
        except READ_ERRORS as e:
            where = d / RESULTS_NAME
            bad.append(Unreadable(where, str(e) if isinstance(e, SftevalError) else f"{where}: {type(e).__name__}: {e}"))
    found.sort(key=lambda r: (r.complete, r.created, r.run_id), reverse=True)
    return RunScan(tuple(found), tuple(bad))


def list_runs(reports: str | Path) -> list[RunInfo]:
    """Every readable run folder under `reports`, newest first (incomplete runs last);
    an unreadable one is skipped with a warning naming the file and why."""
    scan = scan_runs(reports)
    for u in scan.unreadable:
        warnings.warn(f"skipped an unreadable run: {u.reason}", stacklevel=2)
    return list(scan.runs)


def _benchmarks_of(run_dir: Path) -> list[str]:
    if (run_dir / RESULTS_NAME).is_file():
        return list(read_results(run_dir).benchmarks)
    return sorted(p.stem for p in (run_dir / "samples").glob("*.jsonl"))


def common_benchmarks(run_a: str | Path, run_b: str | Path) -> list[str]:
    """Benchmarks both runs have samples for, in run A's order."""
    a = [b for b in _benchmarks_of(Path(run_a)) if samples_file(run_a, b).is_file()]
    b = {x for x in _benchmarks_of(Path(run_b)) if samples_file(run_b, x).is_file()}
    return [x for x in a if x in b]


def list_comparisons(reports: str | Path) -> list[Path]:
    """Every comparison.json under `reports` (any depth), newest first."""
    reports = Path(reports)
    if not reports.is_dir():
        return []
    return sorted(reports.rglob("comparison.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def list_sweeps(reports: str | Path) -> list[Path]:
    """`OUT/sweeps/<key>/sweep.json` files, sorted by key (`<name>-<hash8>` since sweeps are
    keyed by their source folder; older `<name>/` folders are found too)."""
    root = Path(reports) / "sweeps"
    return sorted(root.glob("*/sweep.json")) if root.is_dir() else []
