"""comparison.json's per-benchmark entries and mismatches as frozen dataclasses.

Shapes (docs/compare-format.md, "BenchmarkComparison", "Mismatch"), read under the
file's schema `sfteval.compare/1`: numbers that could not be computed stay None (JSON
null), never NaN; every class keeps the keys it does not know in `extra` (a newer
writer's additions survive a rewrite); keys an older writer did not write read as their
defaults (`role`, `inference`, `uninformative`, the graded-flip fields...).

Not covered: computing them (`sfteval.compare`, `sfteval.metric_compare`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfteval.runfolder.record import INTERVAL, NUMBER, PLAIN, Record, known, opt, rec, seq, table


@dataclass(frozen=True)
class JsonEstimate(Record):
    """An Estimate as comparison.json holds it: `{value, stderr, ci95, n, method}`, null
    where not computable."""

    value: float | None = known(NUMBER, default=None)
    stderr: float | None = known(NUMBER, default=None)
    ci95: tuple[float | None, float | None] = known(INTERVAL, default=(None, None))
    n: int | None = None
    method: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lo(self) -> float | None:
        return self.ci95[0] if len(self.ci95) > 0 else None

    @property
    def hi(self) -> float | None:
        return self.ci95[1] if len(self.ci95) > 1 else None

    def interval(self) -> tuple[float, float] | None:
        """(lo, hi) when both ends are numbers, else None."""
        lo, hi = self.lo, self.hi
        return None if lo is None or hi is None else (float(lo), float(hi))


EST = rec(JsonEstimate)


@dataclass(frozen=True)
class Flips(Record):
    """Items that went from pass to fail (`lost`) and back (`gained`), 0/1 metrics only."""

    lost: int = 0
    gained: int = 0
    lost_ids: tuple[str, ...] = ()
    gained_ids: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricComparison(Record):
    """One metric of one benchmark, tuned vs base over the aligned items."""

    base: JsonEstimate = known(EST)
    tuned: JsonEstimate = known(EST)
    delta: JsonEstimate = known(EST)
    binary: bool = False
    base_reported: JsonEstimate | None = known(opt(EST), default=None)
    tuned_reported: JsonEstimate | None = known(opt(EST), default=None)
    p_value: float | None = known(NUMBER, default=None)
    test: str = "none"
    p_exact: float | None = known(NUMBER, default=None)
    p_holm: float | None = known(NUMBER, default=None)
    retention: float | None = None
    flips: Flips | None = known(opt(rec(Flips)), default=None)
    inference: Mapping[str, Any] | None = None  # what the gate's one-sided tests need (sfteval.paired)
    uninformative: str | None = None  # why the metric measured nothing, when it did not
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ForgettingVerdict(Record):
    """A general benchmark's forgetting verdict (sfteval.diagnoses.forgetting)."""

    verdict: str
    detail: str = ""
    margin: float | None = None
    delta: float | None = None
    ci95: tuple[float | None, float | None] = known(INTERVAL, default=(None, None))
    metric: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FlipExample(Record):
    """One item shown in the report: a pass/fail flip, or (graded metrics) one of the
    largest per-item score changes, which also carries `metric` and the two scores."""

    direction: str
    id: str
    prompt: str = ""
    reference: Any = None
    base_output: str = ""
    tuned_output: str = ""
    base_answer: Any = None
    tuned_answer: Any = None
    metric: str | None = known(omit_none=True, default=None)
    base_score: float | None = known(omit_none=True, default=None)
    tuned_score: float | None = known(omit_none=True, default=None)
    score_change: float | None = known(omit_none=True, default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GroupDelta(Record):
    """One group (an MMLU subject...) of a breakdown key, primary metric, paired."""

    base: JsonEstimate = known(EST)
    tuned: JsonEstimate = known(EST)
    delta: float | None = None
    delta_ci95: tuple[float | None, float | None] = known(INTERVAL, default=(None, None))
    n: int | None = None
    p_value: float | None = None
    q_value: float | None = None  # Benjamini-Hochberg over the key's groups
    flagged: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkComparison(Record):
    """comparison.json `benchmarks.<name>`."""

    kind: str = ""
    general: bool = False
    primary_metric: str | None = None
    n_base: int = 0
    n_tuned: int = 0
    n_aligned: int = 0
    metrics: Mapping[str, MetricComparison] = known(table(rec(MetricComparison)), factory=dict)
    forgetting: ForgettingVerdict | None = known(opt(rec(ForgettingVerdict)), default=None)
    top_flips: tuple[FlipExample, ...] = known(seq(rec(FlipExample)), default=())
    breakdown: Mapping[str, Mapping[str, GroupDelta]] = known(table(table(rec(GroupDelta))), factory=dict)
    role: str | None = known(omit_none=True, default=None)  # written by newer producers only
    extra: Mapping[str, Any] = field(default_factory=dict)

    def primary(self) -> MetricComparison | None:
        """The primary metric's comparison, when it was compared."""
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    def is_target(self, name: str) -> bool:
        """What the tuning was for: role `target`; files without roles: neither general
        nor the `train` sample."""
        return self.role == "target" if self.role else not self.general and name != "train"


@dataclass(frozen=True)
class PromptDifference(Record):
    """Where the first differing prompt diverges (40 characters of context each side)."""

    id: str
    offset: int = 0
    base: str = ""
    tuned: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Mismatch(Record):
    """One difference between the runs in what shapes prompts and scoring."""

    benchmark: str | None
    field: str
    base: Any = None
    tuned: Any = None
    blocking: bool = False
    count: int | None = None
    ids: tuple[str, ...] = known(PLAIN, default=())
    example: PromptDifference | None = known(opt(rec(PromptDifference)), omit_none=True, default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)
