"""Small pieces every kind calls: per-sample generation settings, output texts."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from sfteval.types import GenParams, Generation, Loglik

if TYPE_CHECKING:
    from sfteval.benchmarks import BenchmarkSpec
    from sfteval.kinds import BuildContext


@dataclass(frozen=True)
class Params:
    """A benchmark's GenParams with a helper to derive per-sample seeds."""

    base: GenParams

    def with_seed(self, run_seed: int, sample_id: str) -> GenParams:
        # A per-sample seed makes sampled outputs independent of batching and of where
        # a resumed run picked up: the same item always gets the same seed.
        digest = hashlib.sha256(f"{run_seed}:{self.base.seed}:{sample_id}".encode()).digest()
        return replace(self.base, seed=int.from_bytes(digest[:4], "little"))

    def record(self) -> dict[str, Any]:
        d = dict(self.base.__dict__)
        d["stop"] = list(self.base.stop)
        return d


def gen_params_for(spec: BenchmarkSpec, ctx: BuildContext, *, chat: bool) -> Params:
    """The benchmark's settings; in chat mode, plain-text stop strings such as
    'Question:' are kept only if the TOML lists them under options.chat_stop."""
    params = spec.gen
    if chat and "chat_stop" in spec.options:
        params = replace(params, stop=tuple(spec.options["chat_stop"]))
    return Params(params)


def output_texts(out: Generation | Loglik) -> list[str]:
    if isinstance(out, Generation):
        return list(out.texts) or [""]
    raise TypeError("expected a Generation for a generative benchmark")
