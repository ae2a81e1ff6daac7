"""comparison.json (`sfteval.compare/1`, docs/compare-format.md) as a frozen dataclass.

Typed here: the schema, the two runs compared, the settings; each benchmark entry
(`BenchmarkComparison`, `sfteval.runfolder.compared`) and mismatch; every top-level key
after `holm` is a diagnosis, kept in order under `diagnoses`, each as its record
(`sfteval.runfolder.diagnosed.DIAGNOSIS_RECORDS`) when this version knows the key.
Readers use the typed attributes (`c.benchmarks[b].primary()`, `c.forgetting`,
`c.drift`...), never `.get` chains over JSON.

Not covered: computing a comparison (`sfteval.compare`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfteval.runfolder.compared import BenchmarkComparison, Mismatch
from sfteval.runfolder.diagnosed import DIAGNOSIS_RECORDS, Contamination, Drift, ForgettingSummary, Overfitting
from sfteval.runfolder.records import Where

COMPARE_SCHEMA = "sfteval.compare/1"


@dataclass(frozen=True)
class RunSummary:
    """One side of a comparison: which run, which model."""

    run_id: str
    label: str | None
    path: str
    model_path: str | None
    fingerprint: str | None

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "label": self.label, "path": self.path, "model_path": self.model_path,
                "fingerprint": self.fingerprint}

    @staticmethod
    def from_dict(d: Any, where: Where, side: str) -> RunSummary:
        if not isinstance(d, Mapping) or "run_id" not in d:
            raise where.error(f"'{side}' must name the run compared", f"{side}.run_id")
        return RunSummary(str(d["run_id"]), d.get("label"), str(d.get("path") or ""), d.get("model_path"),
                          d.get("fingerprint"))


_HEAD = ("schema", "created", "base", "tuned", "lineage", "settings", "mismatches", "only_in_base", "only_in_tuned",
         "benchmarks", "holm")


@dataclass(frozen=True)
class Comparison:
    base: RunSummary
    tuned: RunSummary
    created: str
    settings: Mapping[str, Any]
    benchmarks: Mapping[str, BenchmarkComparison]
    mismatches: tuple[Mismatch, ...] = ()
    only_in_base: tuple[str, ...] = ()
    only_in_tuned: tuple[str, ...] = ()
    holm: Mapping[str, Any] = field(default_factory=dict)
    # key -> that diagnosis: its record (`DIAGNOSIS_RECORDS`) for the keys this version
    # knows, the JSON object as read for any other (a newer writer's), in file order
    diagnoses: Mapping[str, Any] = field(default_factory=dict)
    schema: str = COMPARE_SCHEMA
    # the one-line warning when the tuned run's recorded base is not the base compared
    # (`sfteval.lineage`); None when they match or nothing was recorded
    lineage: str | None = None

    @property
    def margin(self) -> float | None:
        """The forgetting margin the comparison was made with."""
        m = self.settings.get("margin")
        return None if m is None else float(m)

    @property
    def forgetting(self) -> ForgettingSummary | None:
        return _typed(self.diagnoses.get("forgetting"), ForgettingSummary)

    @property
    def overfitting(self) -> Overfitting | None:
        return _typed(self.diagnoses.get("overfitting"), Overfitting)

    @property
    def drift(self) -> Mapping[str, Drift]:
        d = self.diagnoses.get("drift")
        return d if isinstance(d, Mapping) else {}

    @property
    def contamination(self) -> Contamination | None:
        return _typed(self.diagnoses.get("contamination"), Contamination)

    def to_dict(self) -> dict[str, Any]:
        diagnoses = {k: DIAGNOSIS_RECORDS[k].dump(v) if k in DIAGNOSIS_RECORDS else v for k, v in self.diagnoses.items()}
        return {"schema": self.schema, "created": self.created, "base": self.base.to_dict(),
                "tuned": self.tuned.to_dict(), "lineage": self.lineage, "settings": dict(self.settings),
                "mismatches": [m.to_dict() for m in self.mismatches], "only_in_base": list(self.only_in_base),
                "only_in_tuned": list(self.only_in_tuned),
                "benchmarks": {b: e.to_dict() for b, e in self.benchmarks.items()},
                "holm": dict(self.holm), **diagnoses}

    @staticmethod
    def from_dict(d: Any, where: Where = Where()) -> Comparison:
        if not isinstance(d, Mapping) or d.get("schema") != COMPARE_SCHEMA:
            got = d.get("schema") if isinstance(d, Mapping) else type(d).__name__
            raise where.error(f"expected schema {COMPARE_SCHEMA!r}, got {got!r}", "schema")
        benches = d.get("benchmarks")
        if not isinstance(benches, Mapping):
            raise where.error("missing or malformed 'benchmarks' object", "benchmarks")
        for b, e in benches.items():
            if not isinstance(e, Mapping) or not isinstance(e.get("metrics", {}), Mapping):
                raise where.error("a benchmark entry must be an object with 'metrics'", f"benchmarks.{b}")
        return Comparison(
            base=RunSummary.from_dict(d.get("base"), where, "base"),
            tuned=RunSummary.from_dict(d.get("tuned"), where, "tuned"),
            created=str(d.get("created") or ""), settings=dict(d.get("settings") or {}),
            lineage=None if d.get("lineage") is None else str(d["lineage"]),
            benchmarks={str(b): BenchmarkComparison.from_dict(e, where, f"benchmarks.{b}") for b, e in benches.items()},
            mismatches=tuple(Mismatch.from_dict(m, where, f"mismatches[{i}]")
                             for i, m in enumerate(d.get("mismatches") or ())),
            only_in_base=tuple(d.get("only_in_base") or ()), only_in_tuned=tuple(d.get("only_in_tuned") or ()),
            holm=dict(d.get("holm") or {}),
            diagnoses={k: DIAGNOSIS_RECORDS[k].load(v, where, k) if k in DIAGNOSIS_RECORDS else v
                       for k, v in d.items() if k not in _HEAD},
        )


def _typed(value: Any, cls: type) -> Any:
    return value if isinstance(value, cls) else None
