"""Checkpoint folders that sfteval (and vLLM) load as they are, and that say how they were made.

`OUT/checkpoint-<step>/` holds:
- `save_pretrained` output: the full model, or the LoRA adapter (`adapter_config.json`
  names the base), with weights gathered through `accelerator.get_state_dict` (so
  ZeRO-3 / FSDP shards are gathered, not saved empty);
- the tokenizer with the chat template used in training, and `generation_config.json`
  whose eos ids include the end-of-turn token that was trained;
- `sfteval.json` (schema `sfteval.checkpoint/1`): base model and revision, data files
  with sha256, sample / token counts, drops by reason, resolved config, step, epoch,
  train / eval loss, git sha, package versions;
- `accelerate_state/`: optimizer, scheduler, RNG states (and a model copy) for resume.

Everything is written under `OUT/.tmp-checkpoint-<step>/` and renamed when complete, so a
folder named `checkpoint-<step>` is always whole; `latest_checkpoint` also requires its
`sfteval.json`. Rotation keeps the newest `keep_last`.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.fileio import atomic_write_json, read_json, sha256_file

SCHEMA = "sfteval.checkpoint/1"
META = "sfteval.json"
STATE = "accelerate_state"
_CKPT_RE = re.compile(r"^checkpoint-(\d+)$")
PACKAGES = ("torch", "transformers", "tokenizers", "accelerate", "peft", "datasets", "sfteval")


@dataclass(frozen=True)
class RunFacts:
    """What stays the same for every checkpoint of a run."""

    base_model: str
    base_revision: str | None
    data_files: tuple[dict[str, Any], ...]
    eval_files: tuple[dict[str, Any], ...]
    counts: dict[str, Any]
    dropped: dict[str, int]
    config: dict[str, Any]
    chat_template_source: str  # "model" | "default"
    git_sha: str | None
    packages: dict[str, str]


def describe_files(files: tuple[str, ...]) -> tuple[dict[str, Any], ...]:
    out = []
    for f in files:
        p = Path(f)
        out.append({"path": str(p.resolve()) if p.is_file() else f, "sha256": sha256_file(p) if p.is_file() else None})
    return tuple(out)


def git_sha(where: Path | None = None) -> str | None:
    """HEAD of the repository holding the trainer, '+dirty' when it has local changes."""
    where = where or Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=where, capture_output=True, text=True, timeout=10)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def checkpoints(out_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    found = []
    root = Path(out_dir)
    if not root.is_dir():
        return []
    for p in root.iterdir():
        m = _CKPT_RE.match(p.name)
        if m and p.is_dir() and (p / META).is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    found = checkpoints(out_dir)
    return found[-1][1] if found else None


def read_meta(ckpt: str | Path) -> dict[str, Any]:
    return read_json(Path(ckpt) / META)


def rotate(out_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest `keep_last` checkpoints; returns what was removed."""
    found = checkpoints(out_dir)
    gone = [p for _, p in found[: max(0, len(found) - keep_last)]]
    for p in gone:
        shutil.rmtree(p, ignore_errors=True)
    return gone


def clean_partial(out_dir: str | Path) -> None:
    """Remove temp folders left by a crash mid-save."""
    root = Path(out_dir)
    if root.is_dir():
        for p in root.glob(".tmp-checkpoint-*"):
            shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(
    accelerator: Any,
    model: Any,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    step: int,
    facts: RunFacts,
    progress: dict[str, Any],
    eos_ids: list[int],
) -> Path:
    """Write checkpoint-<step> atomically (all processes call this)."""
    out = Path(out_dir)
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp / STATE), safe_serialization=True)
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        write_generation_config(unwrapped, tokenizer, tmp, eos_ids)
        meta = {
            "schema": SCHEMA,
            "base_model": facts.base_model,
            "base_revision": facts.base_revision,
            "adapter": (tmp / "adapter_config.json").is_file(),
            "data_files": list(facts.data_files),
            "eval_files": list(facts.eval_files),
            "counts": facts.counts,
            "dropped": facts.dropped,
            "chat_template_source": facts.chat_template_source,
            "config": facts.config,
            **progress,
            "git_sha": facts.git_sha,
            "packages": facts.packages,
        }
        atomic_write_json(tmp / META, meta)
        if final.exists():  # a re-save of the same step (resume at the very end)
            shutil.rmtree(final)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def write_generation_config(model: Any, tokenizer: Any, where: Path, eos_ids: list[int]) -> None:
    """generation_config.json with every trained stop token as eos (pad stays its own id)."""
    from transformers import GenerationConfig

    base = getattr(model, "generation_config", None)
    if base is None and hasattr(model, "get_base_model"):
        base = getattr(model.get_base_model(), "generation_config", None)
    gen = GenerationConfig.from_dict(base.to_dict()) if base is not None else GenerationConfig()
    gen.eos_token_id = sorted(set(eos_ids))
    if tokenizer.bos_token_id is not None:
        gen.bos_token_id = tokenizer.bos_token_id
    if tokenizer.pad_token_id is not None:
        gen.pad_token_id = tokenizer.pad_token_id
    gen.save_pretrained(where)
