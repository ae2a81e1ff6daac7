"""What every diagnosis is given: the two runs, the per-benchmark comparison, the
training data and the comparison settings (one frozen object, built once by compare).

Not covered: computing any of it (`sfteval.compare` does, then hands it over).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sfteval.diagnoses.training import Training
from sfteval.paired import DEFAULT_RESAMPLES
from sfteval.runfolder import Run
from sfteval.runfolder.compared import BenchmarkComparison


@dataclass(frozen=True)
class CompareSettings:
    seed: int = 0
    resamples: int = DEFAULT_RESAMPLES
    alpha: float = 0.05
    margin: float = 0.01
    general: tuple[str, ...] = ()  # marked general in addition to results.json's flags
    allow_mismatch: bool = False
    train_data: tuple[str, ...] = ()  # SFT files; default: the tuned run's trainer data
    sweep: str | None = None
    split: str | None = None  # "select" | "report": compare only that half of the items (sfteval.selection)
    split_benchmarks: tuple[str, ...] = ()  # the benchmarks `split` applies to (a sweep's selection one); () = all


@dataclass(frozen=True)
class DiagnosisInput:
    """The inputs of one comparison's diagnoses. `per_bench` is comparison.json's
    `benchmarks` object (paired deltas, verdicts), typed, computed before any diagnosis runs."""

    base: Run
    tuned: Run
    benches: tuple[str, ...]  # benchmarks in both runs, in the base run's order
    per_bench: Mapping[str, BenchmarkComparison]
    settings: CompareSettings
    training: Training | None
