"""The Backend seam: anything that can complete prompts and score continuations.

Backends receive prompts already rendered (chat template applied, BOS text included) and
tokenize them with `add_special_tokens=False`; that is how the recorded prompt stays
exactly what the model saw. Heavy imports live in the implementation modules, which
are loaded lazily from the registry below.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sfteval.errors import SftevalError
from sfteval.types import GenRequest, Generation, Loglik, LoglikRequest

if TYPE_CHECKING:
    from sfteval.config import EngineSettings

Progress = Callable[[int], None]  # called with the number of requests just finished

BACKENDS: dict[str, str] = {
    "hf": "sfteval.backends.hf:HFBackend",
    "vllm": "sfteval.backends.vllm:VLLMBackend",
    "vllm-server": "sfteval.backends.vllm_server:VLLMServerBackend",
    "openai": "sfteval.backends.openai:OpenAIBackend",
}


@runtime_checkable
class Backend(Protocol):
    """What the runner uses of a backend. The rules all backends share (continuation
    split, dtype "auto", finish reasons, adapter policy) are in `backends.shared` and
    `backends.adapters`; a backend calls them rather than re-deriving them."""

    name: str  # the registry key; recorded as backend.name and part of the run id
    chunk_size: int  # requests per runner chunk: the resume granularity and one engine call

    def generate(self, requests: Sequence[GenRequest], progress: Progress | None = None) -> list[Generation]:
        """Complete every request; one Generation per request, in order."""
        ...

    def loglikelihood(self, requests: Sequence[LoglikRequest], progress: Progress | None = None) -> list[Loglik]:
        """Score each request's continuations after its context, in order."""
        ...

    def info(self) -> dict[str, Any]:
        """Everything needed to reproduce: engine, dtype, device, versions, settings."""
        ...

    def close(self) -> None:
        """Release the model/engine/server. Safe to call twice."""
        ...


class BackendFactory(Protocol):
    """The constructor every registered class has: `Cls(model_path, engine)`.

    `model_path` is a checkpoint folder (a full model or a peft adapter); the backend
    loads it at once (errors name the folder) and owns what it opened until close().
    """

    chunk_size: int

    def __call__(self, model_path: str, engine: EngineSettings) -> Backend: ...


def backend_class(name: str) -> BackendFactory:
    try:
        target = BACKENDS[name]
    except KeyError:
        raise SftevalError(
            f"unknown backend '{name}'", field="backend", hint=f"choose one of: auto, {', '.join(BACKENDS)}"
        ) from None
    module, _, attr = target.partition(":")
    try:
        return getattr(importlib.import_module(module), attr)
    except ImportError as e:
        raise SftevalError(
            f"backend '{name}' needs a package that is not installed: {e.name or e}",
            field="backend",
            hint="install the matching extra, e.g. pip install 'sfteval[vllm]'",
        ) from e
