"""Scorer kinds: how a benchmark's rows become prompts, and outputs become scores.

A benchmark TOML names one kind. A kind is three pure steps, so that scoring can be
re-run on stored outputs without a model ("generate once, score many"):

    build(spec, ctx)                 -> Built (samples + the settings that shaped them)
    score(spec, samples, outputs)    -> one ScoreRecord per sample
    aggregate(spec, records)         -> Aggregate (metrics with error bars, breakdowns)

`records` passed to aggregate are the samples-file lines as the one reader returns them
(`sfteval.runfolder.SampleLine`), so aggregation works from disk alone.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sfteval.errors import SftevalError
from sfteval.types import Estimate, Generation, Loglik, Sample

if TYPE_CHECKING:
    from sfteval.benchmarks import BenchmarkSpec
    from sfteval.prompts import Renderer
    from sfteval.runfolder.records import SampleLine

KINDS: dict[str, str] = {
    "math": "sfteval.kinds.math:MathKind",
    "choice": "sfteval.kinds.choice:ChoiceKind",
    "reference": "sfteval.kinds.reference:ReferenceKind",
    "code": "sfteval.kinds.code:CodeKind",
    "instruction": "sfteval.kinds.instruction:InstructionKind",
}


@dataclass(frozen=True)
class BuildContext:
    renderer: Renderer
    data_path: str | None = None  # --data NAME=PATH override
    limit: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class Built:
    samples: list[Sample]
    settings: dict[str, Any]  # recorded: few-shot ids, chat template use, gen params...
    data: dict[str, Any]  # recorded: source, split, sha256, rows


@dataclass(frozen=True)
class ScoreRecord:
    answer: Any
    scores: dict[str, float]
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Aggregate:
    metrics: dict[str, Estimate]
    primary: str
    breakdown: dict[str, dict[str, dict[str, Estimate]]] = field(default_factory=dict)


class Kind(Protocol):
    name: str

    def build(self, spec: BenchmarkSpec, ctx: BuildContext) -> Built: ...

    def score(
        self, spec: BenchmarkSpec, samples: Sequence[Sample], outputs: Sequence[Generation | Loglik]
    ) -> list[ScoreRecord]: ...

    def aggregate(self, spec: BenchmarkSpec, records: Sequence[SampleLine]) -> Aggregate: ...


def get_kind(name: str) -> Kind:
    try:
        target = KINDS[name]
    except KeyError:
        raise SftevalError(f"unknown kind '{name}'", field="kind", hint=f"one of: {', '.join(KINDS)}") from None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)()
