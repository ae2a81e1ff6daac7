"""sweep.json (`sfteval.sweep/1`) and the trainer's train_log.jsonl, as frozen dataclasses.

    {"schema": "sfteval.sweep/1", "source": "<trainer output folder>",
     "checkpoints": [{"step", "path", "run_id", "run_dir", "metrics": {bench: {metric: Estimate}}}],
     "train_log": [{"step", "epoch", "train_loss", "eval_loss"?, "lr", "grad_norm", "tokens_per_s"}],
     "select": {"metric": "bench/metric", "mode": "max" | "min"},
     "best": {"step", "run_id", "value"} | null}

Not covered: running a sweep (`sfteval.sweep`) or analysing one
(`sfteval.diagnoses.sweep`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfteval.runfolder.records import Where, estimate_from
from sfteval.types import Estimate

SWEEP_SCHEMA = "sfteval.sweep/1"
TRAIN_LOG_FIELDS = ("step", "epoch", "train_loss", "eval_loss", "lr", "grad_norm", "tokens_per_s")


@dataclass(frozen=True)
class TrainLogRow:
    """One logging step of the trainer; columns it did not log are None."""

    step: int
    epoch: float | None = None
    train_loss: float | None = None
    eval_loss: float | None = None
    lr: float | None = None
    grad_norm: float | None = None
    tokens_per_s: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The logged columns only (what sweep.json records)."""
        return {k: getattr(self, k) for k in TRAIN_LOG_FIELDS if getattr(self, k) is not None}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: Where = Where()) -> TrainLogRow:
        if not isinstance(d, Mapping) or "step" not in d:
            raise where.error("log row has no 'step'", "step")
        try:
            cols = {k: (None if d.get(k) is None else float(d[k])) for k in TRAIN_LOG_FIELDS[1:]}
            return TrainLogRow(step=int(d["step"]), **cols,
                               extra={k: v for k, v in d.items() if k not in TRAIN_LOG_FIELDS})
        except (TypeError, ValueError):
            raise where.error("log row has a non-numeric column", "step") from None


@dataclass(frozen=True)
class SweepCheckpoint:
    step: int
    path: str
    run_id: str
    run_dir: str
    metrics: Mapping[str, Mapping[str, Estimate]]  # bench -> metric -> Estimate

    def metric(self, bench: str, metric: str) -> Estimate | None:
        return self.metrics.get(bench, {}).get(metric)

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "path": self.path, "run_id": self.run_id, "run_dir": self.run_dir,
                "metrics": {b: {m: e.to_dict() for m, e in ms.items()} for b, ms in self.metrics.items()}}

    @staticmethod
    def from_dict(d: Any, where: Where, i: int) -> SweepCheckpoint:
        at = f"checkpoints[{i}]"
        if not isinstance(d, Mapping) or "step" not in d:
            raise where.error(f"checkpoint #{i} has no 'step'", f"{at}.step")
        metrics = {b: {m: estimate_from(e, where, f"{at}.metrics.{b}.{m}") for m, e in (ms or {}).items()}
                   for b, ms in (d.get("metrics") or {}).items()}
        return SweepCheckpoint(int(d["step"]), str(d.get("path") or ""), str(d.get("run_id") or ""),
                               str(d.get("run_dir") or ""), metrics)


@dataclass(frozen=True)
class SweepRecord:
    """A checkpoint sweep: per-checkpoint metrics, the train log and the selection rule."""

    source: str
    checkpoints: tuple[SweepCheckpoint, ...]
    train_log: tuple[TrainLogRow, ...]
    select_metric: str  # "bench/metric"
    select_mode: str = "max"  # "max" | "min"
    best: Mapping[str, Any] | None = None  # {"step", "run_id", "value"}
    schema: str = SWEEP_SCHEMA
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema, "source": self.source, "checkpoints": [c.to_dict() for c in self.checkpoints],
                "train_log": [r.to_dict() for r in self.train_log],
                "select": {"metric": self.select_metric, "mode": self.select_mode},
                "best": dict(self.best) if self.best is not None else None, **self.extra}

    @staticmethod
    def from_dict(d: Any, where: Where = Where()) -> SweepRecord:
        if not isinstance(d, Mapping) or d.get("schema") != SWEEP_SCHEMA:
            got = d.get("schema") if isinstance(d, Mapping) else type(d).__name__
            raise where.error(f"expected schema {SWEEP_SCHEMA!r}, got {got!r}", "schema")
        select = d.get("select") or {}
        mode = str(select.get("mode") or "max")
        if mode not in ("max", "min"):
            raise where.error(f"unknown selection mode {mode!r} (max | min)", "select.mode")
        known = {"schema", "source", "checkpoints", "train_log", "select", "best"}
        return SweepRecord(
            source=str(d.get("source") or ""),
            checkpoints=tuple(SweepCheckpoint.from_dict(c, where, i) for i, c in enumerate(d.get("checkpoints") or [])),
            train_log=tuple(TrainLogRow.from_dict(r, where) for r in d.get("train_log") or []),
            select_metric=str(select.get("metric") or ""), select_mode=mode, best=d.get("best"),
            extra={k: v for k, v in d.items() if k not in known},
        )
