"""What a run folder holds, as frozen dataclasses: results.json and its sample lines.

Every class reads with `from_dict(d, where)` and writes with `to_dict()`; `where` names
the file (and line) so a malformed field is reported as `path:line: field`. Readers
refuse a `schema` they do not know. Keys this version does not know are kept in
`extra` and written back unchanged, so a newer writer's additions survive a rewrite.

Versions (docs/run-format.md): results.json is `sfteval.run/1`; sample lines are
`sfteval.sample/1`, declared per benchmark as `samples_schema` in results.json (files
written before that field existed are /1). Files written before benchmarks declared a
`role` get one from their `general` flag and name (`train`, `*_train`), in
`legacy_role` only.

Not covered: reading or writing files (`sfteval.runfolder.read` / `.write`), and the
comparison and sweep files (`sfteval.runfolder.comparison` / `.sweeps`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sfteval.errors import SftevalError
from sfteval.types import FINISH_REASONS, ROLES, RUN_SCHEMA, SAMPLE_SCHEMA, Estimate


@dataclass(frozen=True)
class Where:
    """Where a record came from, for error messages."""

    path: str = ""
    line: int | None = None

    def error(self, message: str, fld: str) -> SftevalError:
        return SftevalError(message, path=self.path or None, line=self.line, field=fld)


def _obj(d: Any, where: Where, fld: str) -> dict[str, Any]:
    if d is None:
        return {}
    if not isinstance(d, Mapping):
        raise where.error(f"expected an object, got {type(d).__name__}", fld)
    return dict(d)


def _float(x: Any) -> float:
    return float("nan") if x is None else float(x)


def estimate_from(d: Any, where: Where, fld: str) -> Estimate:
    """An Estimate from JSON (null numbers, as comparison.json writes them, become NaN)."""
    if not isinstance(d, Mapping) or "value" not in d:
        raise where.error("expected an estimate {value, stderr, ci95, n, method}", fld)
    try:
        ci = d.get("ci95") or (None, None)
        return Estimate(_float(d["value"]), _float(d.get("stderr")), (_float(ci[0]), _float(ci[1])),
                        int(d.get("n") or 0), str(d.get("method") or ""))
    except (TypeError, ValueError, IndexError):
        raise where.error("malformed estimate", fld) from None


def finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


# ----------------------------------------------------------------------------- sample lines


@dataclass(frozen=True)
class SampleLine:
    """One line of samples/<benchmark>.jsonl: one evaluated item.

    `outputs` / `finish_reasons` hold one entry per generated sample (n > 1 for pass@k);
    a log-likelihood item has the chosen continuation as its output and `loglik` as its
    finish reason.
    """

    id: str
    prompt: str
    prompt_hash: str
    outputs: tuple[str, ...]
    finish_reasons: tuple[str, ...]
    answer: Any
    reference: Any
    scores: Mapping[str, float | None]
    meta: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def output(self) -> str:
        """The first output ("" when there is none): what a reader shows for the item."""
        return self.outputs[0] if self.outputs else ""

    @property
    def finish_reason(self) -> str:
        return self.finish_reasons[0] if self.finish_reasons else ""

    def score(self, metric: str) -> float | None:
        v = self.scores.get(metric)
        return None if v is None else float(v)

    @property
    def num_tokens(self) -> float | None:
        """Tokens in the first output, when the backend counted them."""
        nt = self.meta.get("num_tokens")
        if isinstance(nt, list):
            nt = nt[0] if nt else None
        return float(nt) if isinstance(nt, (int, float)) else None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "prompt": self.prompt, "prompt_hash": self.prompt_hash}
        if len(self.outputs) == 1:
            d.update(output=self.outputs[0], finish_reason=self.finish_reasons[0])
        else:
            d.update(outputs=list(self.outputs), finish_reasons=list(self.finish_reasons))
        d.update(answer=self.answer, reference=self.reference, scores=dict(self.scores), meta=dict(self.meta))
        return {**d, **self.extra}

    @staticmethod
    def from_dict(d: Mapping[str, Any], where: Where = Where()) -> SampleLine:
        if "id" not in d:
            raise where.error("sample has no 'id'", "id")
        if not isinstance(d.get("scores", {}), Mapping):
            raise where.error("'scores' must be an object", "scores")
        if d.get("output") is not None:
            outputs: tuple[str, ...] = (str(d["output"]),)
        else:
            outputs = tuple(str(x) for x in d.get("outputs") or ())
        if d.get("finish_reason") is not None:
            reasons: tuple[str, ...] = (str(d["finish_reason"]),)
        else:
            reasons = tuple(str(x) for x in d.get("finish_reasons") or ())
        known = {"id", "prompt", "prompt_hash", "output", "outputs", "finish_reason", "finish_reasons", "answer",
                 "reference", "scores", "meta"}
        return SampleLine(
            id=str(d["id"]), prompt=str(d.get("prompt") or ""), prompt_hash=str(d.get("prompt_hash") or ""),
            outputs=outputs, finish_reasons=reasons, answer=d.get("answer"), reference=d.get("reference"),
            scores=dict(d.get("scores") or {}), meta=_obj(d.get("meta"), where, "meta"),
            extra={k: v for k, v in d.items() if k not in known},
        )


def check_finish_reasons(line: SampleLine, where: Where = Where()) -> None:
    """The writer's rule: every finish reason is one docs/run-format.md lists."""
    if len(line.finish_reasons) != len(line.outputs) or not line.outputs:
        raise where.error(f"sample '{line.id}': {len(line.outputs)} outputs but "
                          f"{len(line.finish_reasons)} finish reasons", "finish_reason")
    bad = [r for r in line.finish_reasons if r not in FINISH_REASONS]
    if bad:
        raise where.error(f"sample '{line.id}': finish reason {bad[0]!r} is not one of "
                          f"{', '.join(FINISH_REASONS)}", "finish_reason")


# ----------------------------------------------------------------------------- results.json


LEGACY_GENERAL = ("mmlu", "gsm8k", "humaneval")  # general in runs that predate the `general` flag too


def legacy_role(name: str, entry: Mapping[str, Any]) -> str:
    """The role of a benchmark in a results.json written before roles were recorded: its
    `general` flag (or, older still, the default general list), else train or target by
    the catalog's names. The only place a name decides a role."""
    if bool(entry["general"]) if "general" in entry else name in LEGACY_GENERAL:
        return "general"
    return "train" if name == "train" or name.endswith("_train") else "target"


Breakdown = Mapping[str, Mapping[str, Mapping[str, Estimate]]]  # key -> group -> metric -> Estimate


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's entry in results.json: its metrics and what shaped them."""

    name: str
    kind: str
    role: str
    n: int
    metrics: Mapping[str, Estimate]
    primary_metric: str | None
    settings: Mapping[str, Any] = field(default_factory=dict)
    data: Mapping[str, Any] = field(default_factory=dict)
    prompts_digest: str | None = None
    samples_file: str = ""
    breakdown: Breakdown = field(default_factory=dict)
    timing: Mapping[str, float] = field(default_factory=dict)
    description: str = ""
    source: str = ""
    samples_schema: str = SAMPLE_SCHEMA
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def general(self) -> bool:
        """Counts toward catastrophic-forgetting checks."""
        return self.role == "general"

    @property
    def samples_path(self) -> str:
        return self.samples_file or f"samples/{self.name}.jsonl"

    def primary(self) -> Estimate | None:
        return self.metrics.get(self.primary_metric) if self.primary_metric else None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "kind": self.kind, "role": self.role, "general": self.general, "description": self.description,
            "n": self.n, "metrics": {k: v.to_dict() for k, v in self.metrics.items()},
            "primary_metric": self.primary_metric,
            "breakdown": {k: {g: {m: e.to_dict() for m, e in ms.items()} for g, ms in groups.items()}
                          for k, groups in self.breakdown.items()},
            "settings": dict(self.settings), "data": dict(self.data), "prompts_digest": self.prompts_digest,
            "samples_file": self.samples_path, "samples_schema": self.samples_schema, "timing": dict(self.timing),
            "source": self.source,
        }
        return {**d, **self.extra}

    @staticmethod
    def from_dict(name: str, d: Any, where: Where = Where()) -> BenchmarkResult:
        at = f"benchmarks.{name}"
        d = _obj(d, where, at)
        role = d.get("role") or legacy_role(name, d)
        if role not in ROLES:
            raise where.error(f"unknown role {role!r} (one of {', '.join(ROLES)})", f"{at}.role")
        schema = d.get("samples_schema") or SAMPLE_SCHEMA
        if schema != SAMPLE_SCHEMA:
            raise where.error(f"expected samples schema {SAMPLE_SCHEMA!r}, got {schema!r}", f"{at}.samples_schema")
        metrics = {m: estimate_from(e, where, f"{at}.metrics.{m}") for m, e in _obj(d.get("metrics"), where,
                                                                                     f"{at}.metrics").items()}
        breakdown = {
            key: {g: {m: estimate_from(e, where, f"{at}.breakdown.{key}.{g}.{m}") for m, e in _obj(ms, where, at).items()}
                  for g, ms in _obj(groups, where, f"{at}.breakdown.{key}").items()}
            for key, groups in _obj(d.get("breakdown"), where, f"{at}.breakdown").items()
        }
        known = {"kind", "role", "general", "description", "n", "metrics", "primary_metric", "breakdown", "settings",
                 "data", "prompts_digest", "samples_file", "samples_schema", "timing", "source"}
        return BenchmarkResult(
            name=name, kind=str(d.get("kind") or ""), role=role, n=int(d.get("n") or 0), metrics=metrics,
            primary_metric=d.get("primary_metric") or next(iter(metrics), None),
            settings=_obj(d.get("settings"), where, f"{at}.settings"), data=_obj(d.get("data"), where, f"{at}.data"),
            prompts_digest=d.get("prompts_digest"), samples_file=str(d.get("samples_file") or ""),
            breakdown=breakdown, timing=_obj(d.get("timing"), where, f"{at}.timing"),
            description=str(d.get("description") or ""), source=str(d.get("source") or ""), samples_schema=schema,
            extra={k: v for k, v in d.items() if k not in known},
        )


@dataclass(frozen=True)
class ModelInfo:
    """What was evaluated: a checkpoint (path + fingerprint + trainer metadata) or a replay."""

    kind: str
    path: str | None
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    trainer: Mapping[str, Any] = field(default_factory=dict)
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def digest(self) -> str | None:
        return self.fingerprint.get("digest")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "path": self.path, "fingerprint": dict(self.fingerprint),
                "trainer": dict(self.trainer), **self.extra}

    @staticmethod
    def from_dict(d: Any, where: Where = Where()) -> ModelInfo:
        d = _obj(d, where, "model")
        return ModelInfo(str(d.get("kind") or "checkpoint"), d.get("path"), _obj(d.get("fingerprint"), where,
                         "model.fingerprint"), _obj(d.get("trainer"), where, "model.trainer"),
                         {k: v for k, v in d.items() if k not in {"kind", "path", "fingerprint", "trainer"}})


@dataclass(frozen=True)
class RunResults:
    """results.json: the run's provenance and every benchmark's metrics (no samples)."""

    run_id: str
    label: str
    created: str
    finished: str
    model: ModelInfo
    benchmarks: Mapping[str, BenchmarkResult]
    config: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, Any] = field(default_factory=dict)
    backend: Mapping[str, Any] = field(default_factory=dict)
    prompting: Mapping[str, Any] = field(default_factory=dict)
    skipped: Mapping[str, str] = field(default_factory=dict)
    schema: str = RUN_SCHEMA
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def backend_name(self) -> str:
        return str(self.backend.get("name") or self.config.get("backend") or "")

    def with_role(self, role: str) -> list[str]:
        """Benchmarks declaring `role`, in run order."""
        return [b for b, r in self.benchmarks.items() if r.role == role]

    def to_dict(self) -> dict[str, Any]:
        d = {"schema": self.schema, "run_id": self.run_id, "label": self.label, "created": self.created,
             "finished": self.finished, "model": self.model.to_dict(), "config": dict(self.config),
             "environment": dict(self.environment), "backend": dict(self.backend), "prompting": dict(self.prompting),
             "skipped": dict(self.skipped), "benchmarks": {b: r.to_dict() for b, r in self.benchmarks.items()}}
        return {**d, **self.extra}

    @staticmethod
    def from_dict(d: Any, where: Where = Where()) -> RunResults:
        if not isinstance(d, Mapping) or d.get("schema") != RUN_SCHEMA:
            got = d.get("schema") if isinstance(d, Mapping) else type(d).__name__
            raise where.error(f"expected schema {RUN_SCHEMA!r}, got {got!r}", "schema")
        if not isinstance(d.get("benchmarks"), Mapping):
            raise where.error("missing or malformed 'benchmarks' object", "benchmarks")
        known = {"schema", "run_id", "label", "created", "finished", "model", "config", "environment", "backend",
                 "prompting", "skipped", "benchmarks"}
        return RunResults(
            run_id=str(d.get("run_id") or ""), label=str(d.get("label") or ""), created=str(d.get("created") or ""),
            finished=str(d.get("finished") or ""), model=ModelInfo.from_dict(d.get("model"), where),
            benchmarks={b: BenchmarkResult.from_dict(b, r, where) for b, r in d["benchmarks"].items()},
            config=_obj(d.get("config"), where, "config"), environment=_obj(d.get("environment"), where, "environment"),
            backend=_obj(d.get("backend"), where, "backend"), prompting=_obj(d.get("prompting"), where, "prompting"),
            skipped=_obj(d.get("skipped"), where, "skipped"), schema=RUN_SCHEMA,
            extra={k: v for k, v in d.items() if k not in known},
        )
