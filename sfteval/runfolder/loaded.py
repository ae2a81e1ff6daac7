"""A run folder read whole: results.json plus every benchmark's samples keyed by id.

Built by `sfteval.runfolder.read.read_run`. Not covered: listing runs
(`sfteval.runfolder.listing`) and anything that needs a model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from sfteval.runfolder.records import BenchmarkResult, RunResults, SampleLine


@dataclass(frozen=True)
class Run:
    """results.json and every benchmark's samples by id (`samples[bench][id]`)."""

    path: Path
    results: RunResults
    samples: Mapping[str, Mapping[str, SampleLine]] = field(default_factory=dict)

    @property
    def run_id(self) -> str:
        return self.results.run_id or self.path.name

    @property
    def benchmarks(self) -> Mapping[str, BenchmarkResult]:
        return self.results.benchmarks
