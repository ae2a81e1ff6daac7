"""The vocabulary of sfteval: frozen dataclasses that every module speaks.

Files on disk are these dataclasses serialised (see `to_dict`), each carrying a
`schema` string so readers can refuse what they do not understand.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

RUN_SCHEMA = "sfteval.run/1"  # results.json (sfteval.runfolder.records.RunResults)
SAMPLE_SCHEMA = "sfteval.sample/1"  # a samples/<bench>.jsonl line (sfteval.runfolder.records.SampleLine)

# Why a generation ended (docs/run-format.md); the run-folder writer refuses any other value.
# stop: a stop string; eos: the end-of-sequence token (or end of turn); length: the token
# budget; error: the backend failed on this request; loglik: scored by log-likelihood,
# nothing generated; unknown: a replayed output whose file did not say.
FinishReason = Literal["stop", "length", "eos", "error", "loglik", "unknown"]

# What a benchmark measures, declared in its TOML (`role = ...`):
# target: the task the fine-tuning aims at (held-out SFT data); train: a sample of the SFT
# training data, scored like the target (the gap measures overfitting); general: a skill
# the tuned model should keep (counts toward catastrophic-forgetting checks).
Role = Literal["target", "train", "general"]

FINISH_REASONS: tuple[str, ...] = get_args(FinishReason)
ROLES: tuple[str, ...] = get_args(Role)


@dataclass(frozen=True)
class GenParams:
    """Generation settings for one request; recorded verbatim in results.json."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    n: int = 1
    stop: tuple[str, ...] = ()
    seed: int = 0

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


@dataclass(frozen=True)
class GenRequest:
    """One prompt to complete.

    `prompt` is the exact text handed to the tokenizer, with any BOS text already in it:
    backends tokenize it with `add_special_tokens=False`, so what is recorded is what
    the model saw (no silent double BOS).
    """

    prompt: str
    params: GenParams


@dataclass(frozen=True)
class Generation:
    texts: tuple[str, ...]
    finish_reasons: tuple[FinishReason, ...]
    num_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class LoglikRequest:
    """Score `continuations` after `context` (same tokenization rule as GenRequest).

    When every continuation is a single token after the context, backends answer with
    one forward pass (the MMLU letters case).
    """

    context: str
    continuations: tuple[str, ...]


@dataclass(frozen=True)
class Loglik:
    logprobs: tuple[float, ...]  # summed log-probability of each continuation
    is_greedy: tuple[bool, ...]  # continuation is the argmax at every position
    num_tokens: tuple[int, ...] = ()


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass(frozen=True)
class Conversation:
    """A normalised SFT example, whatever format it came from.

    `source` names where it came from ("file.jsonl:12") so errors can point at it.
    """

    id: str
    messages: tuple[Message, ...]
    source: str = ""


@dataclass(frozen=True)
class Sample:
    """One evaluation item, rendered: what to ask and what is right.

    `request` is a GenRequest or a LoglikRequest; `meta` carries kind-specific data the
    scorer needs (subject, choices, test code, ...).
    """

    id: str
    prompt: str
    reference: Any
    request: GenRequest | LoglikRequest
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Estimate:
    """A metric with its uncertainty. `method` says how stderr/ci95 were computed."""

    value: float
    stderr: float
    ci95: tuple[float, float]
    n: int
    method: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "stderr": self.stderr,
            "ci95": [self.ci95[0], self.ci95[1]],
            "n": self.n,
            "method": self.method,
        }

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Estimate:
        return Estimate(
            value=float(d["value"]),
            stderr=float(d["stderr"]),
            ci95=(float(d["ci95"][0]), float(d["ci95"][1])),
            n=int(d["n"]),
            method=str(d.get("method", "")),
        )


def to_dict(obj: Any) -> Any:
    """Serialise nested dataclasses/tuples into JSON-ready structures."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        if hasattr(obj, "to_dict"):
            return obj.to_dict()
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(x) for x in obj]
    if isinstance(obj, dict):
        return {str(k): to_dict(v) for k, v in obj.items()}
    return obj
