"""comparison.json's diagnoses as frozen dataclasses, one record per key of
`sfteval.diagnoses.DIAGNOSES` (`DIAGNOSIS_RECORDS`, same keys, same order).

Shapes: docs/compare-format.md (forgetting, overfitting, drift, contamination). A
section that could not be computed is `{"available": false, "reason": ...}`: a
`Section` with `available` False, which writes back only what it was given. Unknown
keys are kept in `extra`; a diagnosis key this module does not know stays a JSON object
in `Comparison.diagnoses`, so a newer writer's diagnosis survives a rewrite.

Not covered: computing them (`sfteval.diagnoses`); the insides of a sweep's
`selection` and `earliest_equivalent` stay JSON objects (`sfteval.selection` owns them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any

from sfteval.runfolder.compared import EST, JsonEstimate
from sfteval.runfolder.record import Codec, Record, known, opt, rec, seq, table


@dataclass(frozen=True)
class Section(Record):
    """A record that may be "not available" (then only `reason` matters)."""

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if getattr(self, "available", True):
            return d if getattr(self, "reason", None) is not None else {k: v for k, v in d.items() if k != "reason"}
        # not available: what the producer gave, not every default
        keep = {"available", "reason"}
        for f in fields(self):
            default = f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]
            if f.name != "extra" and getattr(self, f.name) != default:
                keep.add(f.metadata.get("key") or f.name)
        return {k: v for k, v in d.items() if k in keep or k in getattr(self, "extra", {})}


@dataclass(frozen=True)
class ForgettingSummary(Record):
    """`forgetting`: general benchmarks by verdict."""

    margin: float | None = None
    forgot: tuple[str, ...] = ()
    no_evidence: tuple[str, ...] = known(key="no evidence", default=())
    improved: tuple[str, ...] = ()
    not_measured: tuple[str, ...] = known(key="not measured", default=())
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gap(Record):
    """train - heldout on one run."""

    train: JsonEstimate = known(EST)
    heldout: JsonEstimate = known(EST)
    gap: JsonEstimate = known(EST)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainHeldout(Section):
    available: bool = False
    reason: str | None = None
    metric: str | None = None
    benchmarks: tuple[str, ...] = ()
    tuned: Gap | None = known(opt(rec(Gap)), default=None)
    base: Gap | None = known(opt(rec(Gap)), default=None)
    gap_change: JsonEstimate | None = known(opt(EST), default=None)
    flag: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OverlapItem(Record):
    """A flagged generation: share of its 8-grams in the training text, a shared 20-token run."""

    id: str
    overlap: float | None = None
    run: bool = False
    train_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Rate(Record):
    share: JsonEstimate | None = known(opt(EST), default=None)
    count: int = 0
    n: int = 0
    items: tuple[OverlapItem, ...] = known(seq(rec(OverlapItem)), default=())
    extra: Mapping[str, Any] = field(default_factory=dict)


RATE = opt(rec(Rate))


@dataclass(frozen=True)
class RatePair(Record):
    tuned: Rate | None = known(RATE, default=None)
    base: Rate | None = known(RATE, default=None)
    benchmark: str | None = known(omit_none=True, default=None)  # the held-out entry names its benchmark
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Memorisation(Section):
    available: bool = False
    reason: str | None = None
    training_sources: tuple[str, ...] = ()
    n_training: int = 0
    heldout: RatePair | None = known(opt(rec(RatePair)), default=None)
    regurgitation: Mapping[str, RatePair] = known(table(rec(RatePair)), factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepPoint(Record):
    step: int
    run_id: str | None = None
    value: float | None = None
    ci95: tuple[float | None, float | None] = known(default=(None, None))
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Peak(Record):
    step: int
    value: float | None = None
    last_step: int | None = None
    last_value: float | None = None
    before_end: bool = False
    significant: bool | None = None  # None: not tested (no per-item scores)
    p_corrected: float | None = known(omit_none=True, default=None)
    correction: str | None = known(omit_none=True, default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Keep(Record):
    """The checkpoint to keep; with a select/report split, its report-split value."""

    step: int
    run_id: str | None = None
    reason: str = ""
    reported_on: str | None = known(omit_none=True, default=None)
    value: float | None = known(omit_none=True, default=None)
    ci95: tuple[float | None, float | None] | None = known(omit_none=True, default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LossCurve(Section):
    available: bool = False
    reason: str | None = None
    min_eval_step: int | None = None
    min_eval_loss: float | None = None
    last_eval_loss: float | None = None
    train_loss_before: float | None = None
    train_loss_after: float | None = None
    diverging: bool = False
    steps: tuple[int, ...] = ()
    train_loss: tuple[float, ...] = ()
    eval_steps: tuple[int, ...] = ()
    eval_loss: tuple[float, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SweepAnalysis(Section):
    """`overfitting.sweep` (and `sfteval report` on a sweep.json)."""

    available: bool = False
    reason: str | None = None
    path: str | None = None
    metric: str | None = None
    mode: str | None = None
    points: tuple[SweepPoint, ...] = known(seq(rec(SweepPoint)), default=())
    loss: LossCurve | None = known(opt(rec(LossCurve)), omit_none=True, default=None)
    selection_aware: bool | None = known(omit_none=True, default=None)
    selection: Mapping[str, Any] | None = known(omit_none=True, default=None)
    peak: Peak | None = known(opt(rec(Peak)), omit_none=True, default=None)
    keep: Keep | None = known(opt(rec(Keep)), omit_none=True, default=None)
    earliest_equivalent: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = super().to_dict()
        if self.available and self.peak is None:  # written only with a peak
            d.pop("earliest_equivalent", None)
        return d


@dataclass(frozen=True)
class Overfitting(Record):
    train_heldout: TrainHeldout = known(rec(TrainHeldout), factory=TrainHeldout)
    memorisation: Memorisation = known(rec(Memorisation), factory=Memorisation)
    sweep: SweepAnalysis = known(rec(SweepAnalysis), factory=SweepAnalysis)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Change(Record):
    """One drift measure over aligned items, base vs tuned."""

    base: float | None = None
    tuned: float | None = None
    delta: float | None = None
    delta_ci95: tuple[float | None, float | None] = known(default=(None, None))
    p_value: float | None = None
    test: str = "none"
    q_value: float | None = known(omit_none=True, default=None)  # only measures in the FDR family
    extra: Mapping[str, Any] = field(default_factory=dict)


CHANGE = opt(rec(Change))


@dataclass(frozen=True)
class Collapse(Record):
    """One run's answer distribution against the references' (choice benchmarks)."""

    answer_shares: Mapping[str, float] = known(factory=dict)
    reference_shares: Mapping[str, float] = known(factory=dict)
    top_answer: str | None = None
    top_share: float | None = None
    n: int = 0
    tv_distance: float | None = None
    p_value: float | None = None
    flagged: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollapsePair(Record):
    base: Collapse | None = known(opt(rec(Collapse)), default=None)
    tuned: Collapse | None = known(opt(rec(Collapse)), default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Drift(Record):
    """`drift.<benchmark>`."""

    extraction_failure_rate: Change | None = known(CHANGE, default=None)
    strict_flexible_gap: Change | None = known(CHANGE, default=None)
    output_tokens: Change | None = known(CHANGE, default=None)
    length_ratio: float | None = None
    truncation_rate: Change | None = known(CHANGE, default=None)
    repetition: Change | None = known(CHANGE, default=None)
    template_leak_rate: Change | None = known(CHANGE, default=None)
    template_tokens: Mapping[str, int] = known(factory=dict)
    collapse: CollapsePair | None = known(opt(rec(CollapsePair)), omit_none=True, default=None)
    flags: tuple[str, ...] = ()
    fdr: Mapping[str, Any] = known(factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def measure(self, name: str) -> Change | None:
        return getattr(self, name, None) if name in MEASURES else None


MEASURES = ("extraction_failure_rate", "strict_flexible_gap", "output_tokens", "truncation_rate", "repetition",
            "template_leak_rate")


@dataclass(frozen=True)
class CleanScores(Record):
    """The primary metric recomputed without the flagged items."""

    metric: str
    n: int = 0
    base: JsonEstimate | None = known(opt(EST), default=None)
    tuned: JsonEstimate | None = known(opt(EST), default=None)
    delta: JsonEstimate | None = known(opt(EST), default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ContaminatedItem(Record):
    id: str
    prompt_overlap: float | None = None
    reference_overlap: float | None = None
    run: bool = False
    train_id: str | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkContamination(Record):
    n: int = 0
    flagged: int = 0
    items: tuple[ContaminatedItem, ...] = known(seq(rec(ContaminatedItem)), default=())
    clean: CleanScores | None = known(opt(rec(CleanScores)), default=None)
    extra: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Contamination(Section):
    available: bool = False
    reason: str | None = None
    training_sources: tuple[str, ...] = ()
    n_training: int = 0
    benchmarks: Mapping[str, BenchmarkContamination] = known(table(rec(BenchmarkContamination)), factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)


# comparison.json key -> its record, in `sfteval.diagnoses.DIAGNOSES` order (a test checks the keys agree)
DIAGNOSIS_RECORDS: dict[str, Codec] = {
    "forgetting": rec(ForgettingSummary),
    "overfitting": rec(Overfitting),
    "drift": table(rec(Drift)),
    "contamination": rec(Contamination),
}
