"""Checkpoint folders that sfteval (and vLLM) load as they are, and that say how they were made.

`OUT/checkpoint-<step>/` holds:
- `save_pretrained` output: the full model in the base's own dtype (a bf16 base gives a
  bf16 checkpoint of the same size), or ONLY the LoRA adapter (`adapter_config.json`
  names the base by absolute path or hub id + revision), with weights gathered through
  `accelerator.get_state_dict` (so ZeRO-3 / FSDP shards are gathered, not saved empty);
- the tokenizer with the chat template used in training, and `generation_config.json`
  whose eos ids include the end-of-turn token that was trained;
- `sfteval.json` (schema `sfteval.checkpoint/1`): run id, base model and revision, dtype,
  data files with sha256, sample / token counts, drops by reason, chat template source
  and sha256, resolved config, step, epoch, train / eval loss, git sha, package versions;
- `resume_state/` (`sfteval.train.resume`): optimizer, scheduler and RNG states; no copy
  of the weights, except the fp32 master copy when the saved weights were cast down.

Everything is written under `OUT/.tmp-checkpoint-<step>/` and renamed when complete, so a
folder named `checkpoint-<step>` is always whole; `latest_checkpoint` also requires its
`sfteval.json`. Rotation (`sfteval.train.outputs.rotate`) touches only this run's checkpoints.
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
STATE = "resume_state"
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
    chat_template_source: str  # "model" | "default" | "builtin:<name>" | "file:<path>"
    git_sha: str | None
    packages: dict[str, str]
    run_id: str = ""
    chat_template_sha256: str = ""


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


def clean_partial(out_dir: str | Path) -> None:
    """Remove temp folders left by a crash mid-save."""
    root = Path(out_dir)
    if root.is_dir():
        for pattern in (".tmp-checkpoint-*", ".trash-*", ".tmp-merged"):
            for p in root.glob(pattern):
                shutil.rmtree(p, ignore_errors=True)


def save_checkpoint(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    scheduler: Any,
    tokenizer: Any,
    out_dir: str | Path,
    *,
    step: int,
    facts: RunFacts,
    progress: dict[str, Any],
    eos_ids: list[int],
    saved_dtype: str,
) -> Path:
    """Write checkpoint-<step> atomically (all processes call this)."""
    import torch

    from sfteval.train.model import unique_state
    from sfteval.train.resume import save_resume_state

    out = Path(out_dir)
    final = out / f"checkpoint-{step}"
    tmp = out / f".tmp-checkpoint-{step}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    accelerator.wait_for_everyone()
    state_dict = accelerator.get_state_dict(model)  # gathers ZeRO-3 / FSDP shards
    master = None
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        adapter = hasattr(unwrapped, "peft_config")
        dtype = getattr(torch, saved_dtype)
        # Under FSDP2 the wrapped model's parameters are sharded DTensors: save_pretrained would
        # touch them (a collective on one process only: a hang), so the gathered dict is written directly.
        direct = _is_fsdp(accelerator)
        if adapter:
            # peft keeps only the adapter's tensors of this state dict
            if direct:
                _save_adapter_directly(unwrapped, state_dict, tmp)
            else:
                unwrapped.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
            _absolute_base(tmp, facts)
        else:
            cast = _cast_keeping_ties(state_dict, dtype)
            lossy = any(v.is_floating_point() and v.dtype != dtype for v in state_dict.values())
            # the fp32 master copy goes into the resume state only when the saved weights are narrower
            master = unique_state(state_dict) if lossy else None
            if direct:
                _save_model_directly(unwrapped, cast, tmp)
            else:
                unwrapped.save_pretrained(tmp, state_dict=cast, safe_serialization=True)
            _set_config_dtype(tmp, saved_dtype)
        tokenizer.save_pretrained(tmp)
        write_generation_config(unwrapped, tokenizer, tmp, eos_ids)
    save_resume_state(accelerator, model, optimizer, scheduler, tmp / STATE, master=master)
    if accelerator.is_main_process:
        meta = {
            "schema": SCHEMA,
            "run_id": facts.run_id,
            "base_model": facts.base_model,
            "base_revision": facts.base_revision,
            "adapter": (tmp / "adapter_config.json").is_file(),
            "dtype": saved_dtype,
            "data_files": list(facts.data_files),
            "eval_files": list(facts.eval_files),
            "counts": facts.counts,
            "dropped": facts.dropped,
            "chat_template_source": facts.chat_template_source,
            "chat_template_sha256": facts.chat_template_sha256,
            "config": facts.config,
            **progress,
            "git_sha": facts.git_sha,
            "packages": facts.packages,
        }
        atomic_write_json(tmp / META, meta)
        if final.exists():  # a re-save of the same step by this run (resume at the very end)
            trash = out / f".trash-{final.name}"
            shutil.rmtree(trash, ignore_errors=True)
            final.rename(trash)
            shutil.rmtree(trash)
        tmp.rename(final)
    accelerator.wait_for_everyone()
    return final


def _is_fsdp(accelerator: Any) -> bool:
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def _tied_names(model: Any) -> set[str]:
    """Parameter names that are another name of an earlier parameter (tied weights), by object identity."""
    seen: set[int] = set()
    tied = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in seen:
            tied.add(name)
        seen.add(id(param))
    return tied


def _save_model_directly(model: Any, state: dict[str, Any], where: Path) -> None:
    from safetensors.torch import save_file

    tied = _tied_names(model)
    save_file({k: v.contiguous() for k, v in state.items() if k not in tied}, str(where / "model.safetensors"), metadata={"format": "pt"})
    model.config.save_pretrained(where)


def _save_adapter_directly(model: Any, state: dict[str, Any], where: Path) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    adapter = get_peft_model_state_dict(model, state_dict=state)
    save_file({k: v.contiguous() for k, v in adapter.items()}, str(where / "adapter_model.safetensors"), metadata={"format": "pt"})
    model.peft_config["default"].save_pretrained(str(where))


def _cast_keeping_ties(state: dict[str, Any], dtype: Any) -> dict[str, Any]:
    """Cast floating tensors to `dtype`; tied tensors (one storage) stay one tensor, so they are saved once."""
    done: dict[int, Any] = {}
    out = {}
    for k, v in state.items():
        if not v.is_floating_point():
            out[k] = v
            continue
        ptr = v.data_ptr()
        if ptr not in done:
            done[ptr] = v.to(dtype)
        out[k] = done[ptr]
    return out


def _absolute_base(folder: Path, facts: RunFacts) -> None:
    """adapter_config.json names the base as an absolute path (or hub id + revision), not as typed."""
    p = folder / "adapter_config.json"
    conf = read_json(p)
    conf["base_model_name_or_path"] = facts.base_model
    if facts.base_revision:
        conf["revision"] = facts.base_revision
    atomic_write_json(p, conf)


def _set_config_dtype(folder: Path, dtype: str) -> None:
    p = folder / "config.json"
    conf = read_json(p)
    conf["dtype"] = dtype
    conf.pop("torch_dtype", None)
    atomic_write_json(p, conf)


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
