"""The one writer of run folders (used by the runner and by the test fixtures) and of
comparison.json / sweep.json.

- `append_samples(path, lines)`: THE place sample lines are written; each line's
  finish reasons are checked against `FinishReason` first, so a file never holds a
  reason docs/run-format.md does not list. Lines are appended in one write per chunk.
- `prompts_digest(hashes)`: the digest of a benchmark's prompts, one definition.
- `write_results(run_dir, results)`: THE place results.json is written, atomically.

Not covered: what goes into the lines (the kinds score, `sfteval.runner` assembles),
locking and resume decisions (the runner's).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sfteval.fileio import append_jsonl, atomic_write_json, sha256_text
from sfteval.runfolder.comparison import Comparison
from sfteval.runfolder.read import COMPARISON_NAME, RESULTS_NAME
from sfteval.runfolder.records import RunResults, SampleLine, Where, check_finish_reasons
from sfteval.runfolder.sweeps import SweepRecord


def prompts_digest(hashes: Mapping[str, str]) -> str:
    """sha256 over `id:prompt_hash` lines sorted by id: equal iff every item's prompt is."""
    return sha256_text("".join(f"{i}:{hashes[i]}\n" for i in sorted(hashes)))


def append_samples(path: str | Path, lines: Sequence[SampleLine]) -> None:
    for line in lines:
        check_finish_reasons(line, Where(str(path)))
    append_jsonl(path, [line.to_dict() for line in lines])


def write_results(run_dir: str | Path, results: RunResults) -> Path:
    path = Path(run_dir) / RESULTS_NAME
    atomic_write_json(path, results.to_dict())
    return path


def write_comparison(comparison: Comparison | Mapping[str, Any], out_dir: str | Path) -> Path:
    """comparison.json in `out_dir`; a dict is checked against the schema first."""
    path = Path(out_dir) / COMPARISON_NAME
    if not isinstance(comparison, Comparison):
        comparison = Comparison.from_dict(comparison, Where(str(path)))
    atomic_write_json(path, comparison.to_dict())
    return path


def write_sweep(path: str | Path, sweep: SweepRecord) -> Path:
    path = Path(path)
    atomic_write_json(path, sweep.to_dict())
    return path
