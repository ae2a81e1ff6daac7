"""A run folder read whole: results.json plus every benchmark's samples keyed by id.

Not covered: listing runs (`sfteval.runs`) and anything that needs a model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.runs import iter_sample_lines, load_results


@dataclass(frozen=True)
class Run:
    """A run folder read whole: results.json and every benchmark's samples by id."""

    path: Path
    results: dict[str, Any]
    samples: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return str(self.results.get("run_id") or self.path.name)

    @property
    def benchmarks(self) -> dict[str, dict[str, Any]]:
        return self.results["benchmarks"]


def is_run_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / "results.json").is_file() or (path.name == "results.json" and path.is_file())


def load_run(path: str | Path) -> Run:
    """Read a run folder (or its results.json) with a schema check."""
    path = Path(path)
    run_dir = path.parent if path.name == "results.json" else path
    results_path = run_dir / "results.json"
    if not results_path.is_file():
        raise SftevalError(
            "not a run folder (no results.json)", path=str(run_dir),
            hint="pass a folder written by `sfteval run` (reports/runs/<run_id>) or a checkpoint dir",
        )
    results = load_results(run_dir)  # the one schema check, shared with the dashboard
    samples: dict[str, dict[str, dict[str, Any]]] = {}
    for name, info in results["benchmarks"].items():
        rel = (info or {}).get("samples_file") or f"samples/{name}.jsonl"
        spath = run_dir / rel
        rows: dict[str, dict[str, Any]] = {}
        for line, obj in iter_sample_lines(spath):  # refuses a duplicate id (file:line)
            if not isinstance(obj.get("scores", {}), dict):
                raise SftevalError("'scores' must be an object", path=str(spath), line=line, field="scores")
            rows[str(obj["id"])] = obj
        samples[name] = rows
    return Run(run_dir.resolve(), results, samples)
