"""Run settings as one frozen dataclass, built from CLI flags or a TOML file.

Everything here is recorded in results.json, and everything that changes what the model
sees or how it is scored feeds the run id (so a re-run with the same settings resumes,
and a run with different settings never mixes into an old folder).
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from sfteval.errors import SftevalError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ChatMode = Literal["auto", "on", "off"]


@dataclass(frozen=True)
class EngineSettings:
    """Passed through to the backend (vLLM names; hf uses what applies)."""

    dtype: str = "auto"  # auto: bf16 on a GPU that supports it, else fp32
    batch_size: int = 16  # hf micro-batch for generation / scoring
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    gpu_memory_utilization: float | None = None
    base_url: str | None = None  # openai backend
    api_key_env: str = "OPENAI_API_KEY"
    model_name: str | None = None  # openai backend: model id at the endpoint
    concurrency: int = 64  # HTTP backends: requests in flight (enough to keep a vLLM server's batch full)
    trust_remote_code: bool = False  # run the model repo's own Python (transformers / vLLM)


@dataclass(frozen=True)
class RunConfig:
    checkpoint: str | None = None  # a HF checkpoint dir, or ORG/NAME[@REV] (None with replay)
    revision: str | None = None  # hub ids: branch, tag or commit (also ORG/NAME@REV)
    model_ref: str | None = None  # the hub id as given, when `checkpoint` was resolved to its snapshot
    label: str | None = None  # display name; defaults to the checkpoint folder name
    benchmarks: tuple[str, ...] = ()
    suite: str | None = None
    data: dict[str, str] = field(default_factory=dict)  # benchmark name -> local file or folder of split files
    fewshot_data: dict[str, str] = field(default_factory=dict)  # benchmark name -> few-shot split file/folder
    train_data: str | None = None  # a sample of the SFT training data, scored as `train`
    shard: str | None = None  # "I/N": evaluate only shard I of N of every benchmark (sfteval.shard)
    backend: str = "auto"
    chat_template: ChatMode = "auto"
    limit: int | None = None
    seed: int = 0
    out: str = "reports"
    replay: str | None = None  # JSONL of {"id", "output"} (or {"benchmark", ...})
    engine: EngineSettings = field(default_factory=EngineSettings)
    bertscore_model: str = "auto"
    bootstrap_resamples: int = 1000
    allow_unsafe_exec: bool = False  # code benchmarks: run without sandbox isolation (sfteval.execute)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise SftevalError("file not found", path=str(path))
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise SftevalError(f"malformed TOML: {e}", path=str(path)) from e


def check_fields(table: dict[str, Any], allowed: set[str], *, path: str, section: str = "") -> None:
    """Refuse unknown keys: a misspelt knob must not be silently ignored."""
    for key in table:
        if key not in allowed:
            where = f"{section}.{key}" if section else key
            raise SftevalError(
                "unknown field", path=path, field=where, hint=f"allowed here: {', '.join(sorted(allowed))}"
            )


def parse_name_paths(items: list[str], flag: str = "--data") -> dict[str, str]:
    """`NAME=PATH` flags (e.g. --data heldout=val.jsonl) into a dict."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise SftevalError(f"{flag} expects NAME=PATH, got '{item}'", field=flag.lstrip("-"))
        out[name] = path
    return out
