"""Read run folders and what is written beside them: a light, dependency-free reader.

Covers: listing runs under a reports folder (`OUT/runs/<run_id>/results.json`, see
docs/run-format.md), loading `results.json` with a schema check, streaming
`samples/<bench>.jsonl`, pairing two runs' samples by id, and loading `comparison.json`
and `sweep.json` (plus a trainer's `train_log.jsonl`).

Not covered: scoring or statistics (compare.py, stats.py) and anything that needs a
model. Readers here validate only what they use, and name file, line and field when a
file is not what we expect. A run folder without results.json but with samples is a run
still in progress (or crashed); `list_runs` reports it as incomplete rather than
skipping it. A folder with neither (a run that died before its first sample) is no run.
An unreadable run is skipped with a warning naming the file and why (`scan_runs` returns
them for a page to show). A samples file with one id twice is refused (file:line).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl, read_json
from sfteval.types import RUN_SCHEMA

SWEEP_SCHEMA = "sfteval.sweep/1"
COMPARISON_SCHEMA_PREFIX = "sfteval.compare/"


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


def load_results(run_dir: str | Path) -> dict[str, Any]:
    """results.json of a run folder, refusing other schemas."""
    path = Path(run_dir) / "results.json"
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != RUN_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise SftevalError(f"expected schema {RUN_SCHEMA!r}, got {got!r}", path=str(path), field="schema")
    if not isinstance(data.get("benchmarks"), dict):
        raise SftevalError("missing or malformed 'benchmarks' object", path=str(path), field="benchmarks")
    for name, info in data["benchmarks"].items():
        if not isinstance(info, dict):
            raise SftevalError(f"expected an object, got {type(info).__name__}", path=str(path), field=f"benchmarks.{name}")
    for key in ("model", "backend", "config", "environment", "prompting"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise SftevalError(f"expected an object, got {type(data[key]).__name__}", path=str(path), field=key)
    return data


def _headline(bench: str, info: dict[str, Any]) -> MetricSummary | None:
    metrics = info.get("metrics") or {}
    name = info.get("primary_metric") or next(iter(metrics), None)
    est = metrics.get(name) if name else None
    if not isinstance(est, dict) or "value" not in est:
        return None
    ci = est.get("ci95") or [float("nan"), float("nan")]
    return MetricSummary(bench, str(name), float(est["value"]), (float(ci[0]), float(ci[1])), int(est.get("n", 0)))


def run_info(run_dir: str | Path) -> RunInfo:
    """Summarise one run folder; a folder without results.json is an incomplete run."""
    run_dir = Path(run_dir)
    if not (run_dir / "results.json").is_file():
        benches = tuple(sorted(p.stem for p in (run_dir / "samples").glob("*.jsonl")))
        return RunInfo(run_dir.name, run_dir, "", "", "", "", "", benches, (), False)
    data = load_results(run_dir)
    model = data.get("model") or {}
    benches = data["benchmarks"]
    heads = tuple(h for b, i in benches.items() if isinstance(i, dict) and (h := _headline(b, i)) is not None)
    return RunInfo(
        run_id=str(data.get("run_id") or run_dir.name),
        path=run_dir,
        label=str(data.get("label") or ""),
        created=str(data.get("created") or ""),
        finished=str(data.get("finished") or ""),
        model=str(model.get("path") or model.get("kind") or ""),
        backend=str((data.get("backend") or {}).get("name") or (data.get("config") or {}).get("backend") or ""),
        benchmarks=tuple(benches),
        headline=heads,
        complete=True,
    )


def is_run_folder(path: str | Path) -> bool:
    """results.json, or at least one samples file (a run in progress or stopped)."""
    path = Path(path)
    return (path / "results.json").is_file() or any((path / "samples").glob("*.jsonl"))


def is_unfinished_run(path: str | Path) -> bool:
    """A folder `sfteval run` left without results.json: samples, a progress record or a
    lock of its own (a run still going, or killed). Never a checkpoint to evaluate."""
    path = Path(path)
    return not (path / "results.json").is_file() and any(
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
            where = d / "results.json"
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


def samples_path(run_dir: str | Path, benchmark: str) -> Path:
    """Where a benchmark's samples live: results.json's `samples_file`, else the default."""
    run_dir = Path(run_dir)
    results = run_dir / "results.json"
    if results.is_file():
        info = load_results(run_dir)["benchmarks"].get(benchmark) or {}
        rel = info.get("samples_file")
        if rel:
            return run_dir / rel
    return run_dir / "samples" / f"{benchmark}.jsonl"


def iter_sample_lines(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line, sample) of a samples file; a torn last line from a crash is skipped. A line
    without an id, or an id seen before (two writers appended), is refused with file:line."""
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path, tolerate_torn_tail=True):
        if "id" not in obj:
            raise SftevalError("sample has no 'id'", path=str(path), line=line, field="id")
        sid = str(obj["id"])
        if sid in seen:
            raise SftevalError(
                f"sample id '{sid}' appears twice (first on line {seen[sid]})", path=str(path), line=line, field="id",
                hint="two writers appended to this run: delete the run folder and run it again",
            )
        seen[sid] = line
        yield line, obj


def iter_samples(run_dir: str | Path, benchmark: str) -> Iterator[dict[str, Any]]:
    """Stream one benchmark's samples (see `iter_sample_lines`)."""
    for _, obj in iter_sample_lines(samples_path(run_dir, benchmark)):
        yield obj


def sample_output(sample: dict[str, Any]) -> str:
    """The (first) raw output of a sample; n > 1 runs store a list under `outputs`."""
    if "output" in sample and sample["output"] is not None:
        return str(sample["output"])
    outs = sample.get("outputs") or []
    return str(outs[0]) if outs else ""


def load_samples_by_id(run_dir: str | Path, benchmark: str) -> dict[str, dict[str, Any]]:
    """Samples keyed by id (as a string); a duplicate id is refused (`iter_sample_lines`)."""
    return {str(s["id"]): s for s in iter_samples(run_dir, benchmark)}


def common_benchmarks(run_a: str | Path, run_b: str | Path) -> list[str]:
    """Benchmarks both runs have samples for, in run A's order."""
    a = [b for b in _benchmarks_of(run_a) if samples_path(run_a, b).is_file()]
    b = {x for x in _benchmarks_of(run_b) if samples_path(run_b, x).is_file()}
    return [x for x in a if x in b]


def _benchmarks_of(run_dir: str | Path) -> list[str]:
    run_dir = Path(run_dir)
    if (run_dir / "results.json").is_file():
        return list(load_results(run_dir)["benchmarks"])
    return sorted(p.stem for p in (run_dir / "samples").glob("*.jsonl"))


def load_comparison(path: str | Path) -> dict[str, Any]:
    """A comparison.json (`sfteval.compare/1`, docs/compare-format.md)."""
    data = read_json(path)
    schema = data.get("schema") if isinstance(data, dict) else None
    if not isinstance(schema, str) or not schema.startswith(COMPARISON_SCHEMA_PREFIX):
        raise SftevalError(
            f"expected a {COMPARISON_SCHEMA_PREFIX}* schema, got {schema!r}", path=str(path), field="schema"
        )
    return data


def list_comparisons(reports: str | Path) -> list[Path]:
    """Every comparison.json under `reports` (any depth), newest first."""
    reports = Path(reports)
    if not reports.is_dir():
        return []
    return sorted(reports.rglob("comparison.json"), key=lambda p: p.stat().st_mtime, reverse=True)


def load_sweep(path: str | Path) -> dict[str, Any]:
    """A sweep.json (`sfteval.sweep/1`): per-checkpoint metrics plus the train log."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, dict) or data.get("schema") != SWEEP_SCHEMA:
        got = data.get("schema") if isinstance(data, dict) else type(data).__name__
        raise SftevalError(f"expected schema {SWEEP_SCHEMA!r}, got {got!r}", path=str(path), field="schema")
    for i, ck in enumerate(data.get("checkpoints") or []):
        if not isinstance(ck, dict) or "step" not in ck:
            raise SftevalError(f"checkpoint #{i} has no 'step'", path=str(path), field=f"checkpoints[{i}].step")
    return data


def list_sweeps(reports: str | Path) -> list[Path]:
    """`OUT/sweeps/<key>/sweep.json` files, sorted by key (`<name>-<hash8>` since sweeps are
    keyed by their source folder; older `<name>/` folders are found too)."""
    root = Path(reports) / "sweeps"
    return sorted(root.glob("*/sweep.json")) if root.is_dir() else []


def load_train_log(path: str | Path) -> list[dict[str, Any]]:
    """The trainer's train_log.jsonl (one object per logging step)."""
    rows = []
    for line, obj in iter_jsonl(path, tolerate_torn_tail=True):
        if "step" not in obj:
            raise SftevalError("log row has no 'step'", path=str(path), line=line, field="step")
        rows.append(obj)
    return rows
