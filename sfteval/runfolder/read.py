"""The one reader of run folders and of what is written beside them.

- `read_results(run_dir)`: results.json alone (no samples), typed.
- `iter_sample_lines(path)`: THE place sample lines are parsed (a torn last line from
  a crash is skipped); `read_samples` keys them by id.
- `read_run(path)`: results plus every benchmark's samples (what compare needs).
- `read_comparison`, `read_sweep`, `read_train_log`; `read_target` for commands that
  take "a run or a comparison" and need its JSON only (gate, report).

Every error names the file, the line (for JSONL) and the field. Not covered: listing
folders (`sfteval.runfolder.listing`) and writing (`sfteval.runfolder.write`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import iter_jsonl, read_json
from sfteval.runfolder.comparison import Comparison
from sfteval.runfolder.loaded import Run
from sfteval.runfolder.records import RunResults, SampleLine, Where
from sfteval.runfolder.sweeps import SweepRecord, TrainLogRow

RESULTS_NAME = "results.json"
COMPARISON_NAME = "comparison.json"
SWEEP_NAME = "sweep.json"


def _run_dir(path: str | Path) -> Path:
    path = Path(path)
    return path.parent if path.name == RESULTS_NAME else path


def is_run_dir(path: str | Path) -> bool:
    return (_run_dir(path) / RESULTS_NAME).is_file()


def read_results(run_dir: str | Path) -> RunResults:
    """results.json of a run folder (or that file), refusing other schemas."""
    path = _run_dir(run_dir) / RESULTS_NAME
    return RunResults.from_dict(read_json(path), Where(str(path)))


def samples_file(run_dir: str | Path, benchmark: str, results: RunResults | None = None) -> Path:
    """Where a benchmark's samples live: results.json's `samples_file`, else the default."""
    run_dir = _run_dir(run_dir)
    if results is None and (run_dir / RESULTS_NAME).is_file():
        results = read_results(run_dir)
    entry = results.benchmarks.get(benchmark) if results is not None else None
    return run_dir / (entry.samples_path if entry is not None else f"samples/{benchmark}.jsonl")


def iter_sample_lines(path: str | Path) -> Iterator[tuple[int, SampleLine]]:
    """(line number, sample) for every line of a samples file, in file order. A torn last
    line from a crash is skipped; a line without an id, or an id seen before (two writers
    appended), is refused with file:line."""
    seen: dict[str, int] = {}
    for line, obj in iter_jsonl(path, tolerate_torn_tail=True):
        sample = SampleLine.from_dict(obj, Where(str(path), line))
        if sample.id in seen:
            raise SftevalError(
                f"sample id '{sample.id}' appears twice (first on line {seen[sample.id]})", path=str(path), line=line,
                field="id", hint="two writers appended to this run: delete the run folder and run it again",
            )
        seen[sample.id] = line
        yield line, sample


def read_samples(path: str | Path) -> dict[str, SampleLine]:
    """A samples file keyed by id (a duplicate id is refused: `iter_sample_lines`)."""
    return {s.id: s for _, s in iter_sample_lines(path)}


def read_run(path: str | Path) -> Run:
    """A run folder (or its results.json) read whole: results and every benchmark's samples."""
    run_dir = _run_dir(path)
    if not (run_dir / RESULTS_NAME).is_file():
        raise SftevalError(
            "not a run folder (no results.json)", path=str(run_dir),
            hint="pass a folder written by `sfteval run` (reports/runs/<run_id>) or a checkpoint dir",
        )
    results = read_results(run_dir)
    samples = {name: read_samples(run_dir / entry.samples_path) for name, entry in results.benchmarks.items()}
    return Run(run_dir.resolve(), results, samples)


def _file(path: str | Path, name: str) -> Path:
    path = Path(path)
    return path / name if path.is_dir() else path


def read_comparison(path: str | Path) -> Comparison:
    """A comparison.json (or the folder holding one), refusing other schemas."""
    path = _file(path, COMPARISON_NAME)
    return Comparison.from_dict(read_json(path), Where(str(path)))


def read_sweep(path: str | Path) -> SweepRecord:
    """A sweep.json (or its folder): per-checkpoint metrics plus the train log."""
    path = _file(path, SWEEP_NAME)
    return SweepRecord.from_dict(read_json(path), Where(str(path)))


def read_train_log(path: str | Path) -> tuple[TrainLogRow, ...]:
    """The trainer's train_log.jsonl (one row per logging step; a torn last line, from a
    trainer still writing, is skipped)."""
    return tuple(TrainLogRow.from_dict(obj, Where(str(path), line))
                 for line, obj in iter_jsonl(path, tolerate_torn_tail=True))


def read_target(path: str | Path) -> dict[str, Any]:
    """The JSON of a run (results.json, no samples read) or of a comparison, validated."""
    path = Path(path)
    if (path.is_dir() and (path / COMPARISON_NAME).is_file()) or path.name == COMPARISON_NAME:
        return read_comparison(path).to_dict()
    if is_run_dir(path):
        return read_results(path).to_dict()
    raise SftevalError("neither a run (results.json) nor a comparison (comparison.json)", path=str(path))
