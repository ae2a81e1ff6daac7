"""The run folder (docs/run-format.md) and the files beside it: one vocabulary, one
reader, one writer.

    records.py     RunResults, BenchmarkResult, ModelInfo, SampleLine (results.json, samples/*.jsonl)
    comparison.py  Comparison (comparison.json)
    compared.py    BenchmarkComparison, MetricComparison, Mismatch... (its benchmark entries)
    diagnosed.py   ForgettingSummary, Overfitting, Drift, Contamination... (its diagnoses)
    record.py      Record: a JSON object as a frozen dataclass (unknown keys kept)
    sweeps.py      SweepRecord, TrainLogRow (sweep.json, train_log.jsonl)
    read.py        read_results / iter_sample_lines / read_samples / read_run / read_comparison / ...
    write.py       append_samples / write_results / prompts_digest / write_comparison / write_sweep
    listing.py     list_runs / run_info / list_comparisons / list_sweeps / common_benchmarks
    loaded.py      Run: a folder read whole

Every downstream module (compare, diagnoses, gate, report, dashboard, ratings, demo)
reads through this package. Not covered: running models (`sfteval.runner` writes run
folders through `write`).
"""

from __future__ import annotations

from sfteval.runfolder.comparison import COMPARE_SCHEMA, Comparison, RunSummary
from sfteval.runfolder.listing import (
    RunInfo,
    RunScan,
    Unreadable,
    common_benchmarks,
    is_run_folder,
    is_unfinished_run,
    list_comparisons,
    list_runs,
    list_sweeps,
    run_info,
    runs_root,
    scan_runs,
)
from sfteval.runfolder.loaded import Run
from sfteval.runfolder.read import (
    is_run_dir,
    iter_sample_lines,
    read_comparison,
    read_results,
    read_run,
    read_samples,
    read_sweep,
    read_target,
    read_train_log,
    samples_file,
)
from sfteval.runfolder.records import (
    FINISH_REASONS,
    ROLES,
    RUN_SCHEMA,
    SAMPLE_SCHEMA,
    BenchmarkResult,
    ModelInfo,
    RunResults,
    SampleLine,
    Where,
)
from sfteval.runfolder.sweeps import SWEEP_SCHEMA, SweepCheckpoint, SweepRecord, TrainLogRow
from sfteval.runfolder.write import append_samples, prompts_digest, write_comparison, write_results, write_sweep

__all__ = [
    "COMPARE_SCHEMA", "FINISH_REASONS", "ROLES", "RUN_SCHEMA", "SAMPLE_SCHEMA", "SWEEP_SCHEMA", "BenchmarkResult",
    "Comparison", "ModelInfo", "Run", "RunResults", "RunSummary", "SampleLine", "SweepCheckpoint", "SweepRecord",
    "TrainLogRow", "Where", "append_samples", "is_run_dir", "iter_sample_lines", "prompts_digest", "read_comparison",
    "read_results", "read_run", "read_samples", "read_sweep", "read_target", "read_train_log", "samples_file",
    "write_comparison", "write_results", "write_sweep", "RunInfo", "RunScan", "Unreadable", "common_benchmarks",
    "is_run_folder", "is_unfinished_run", "list_comparisons", "list_runs", "list_sweeps", "run_info", "runs_root", "scan_runs",
]
