"""Everything a run decides before the model loads: base, tokenizer, template, data, output folder.

All checks that can fail on user input happen here, before any weights are read: the
model path, the template and special tokens, every data row, the output folder's state
(`sfteval.train.outputs`) and, on resume, that the data, batch settings, base model and
chat template are those of the checkpoint. `dry_run` is the same preparation ending in a
preview of two encoded examples instead of a model.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.train.config import TrainConfig
from sfteval.train.templates import TemplateInfo

# Settings that decide which samples form step k: a resume must not change them.
BATCH_KNOBS = ("micro_batch_size", "grad_accum", "seed", "packing", "group_by_length", "cutoff_len", "last_turn_only")


@dataclass(frozen=True)
class Prepared:
    base: str  # absolute path or hub id
    saved_dtype: str  # the base's dtype: checkpoints are written in it
    tokenizer: Any
    template: TemplateInfo
    data: Any  # EncodedData
    eval_data: Any | None


def load_tokenizer(cfg: TrainConfig, base: str) -> tuple[Any, TemplateInfo]:
    from transformers import AutoTokenizer, GenerationConfig

    from sfteval.train.templates import apply_settings

    try:
        tokenizer = AutoTokenizer.from_pretrained(base, revision=cfg.model_revision)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SftevalError(f"cannot load the tokenizer: {first}", path=base, field="model") from e
    try:
        gen_eos = GenerationConfig.from_pretrained(base, revision=cfg.model_revision).eos_token_id
    except OSError:
        gen_eos = None
    extra = [gen_eos] if isinstance(gen_eos, int) else list(gen_eos or [])
    info = apply_settings(
        tokenizer,
        chat_template=cfg.chat_template,
        end_tokens=cfg.end_tokens,
        pad_token=cfg.pad_token,
        eos_token=cfg.eos_token,
        generation_eos=extra,
    )
    return tokenizer, info


def prepare(cfg: TrainConfig, state: Any) -> Prepared:
    """Base, tokenizer and encoded data; the main process encodes (and caches) first."""
    from sfteval.train.tokencache import load_encoded
    from sfteval.train.model import base_dtype_name, resolve_base

    base = resolve_base(cfg.model)
    saved_dtype = base_dtype_name(base, cfg.model_revision)
    tokenizer, info = load_tokenizer(cfg, base)
    enc = dict(
        fmt=cfg.format,
        on_bad=cfg.on_bad,
        cutoff_len=cfg.cutoff_len,
        end_ids=info.end_ids,
        last_turn_only=cfg.last_turn_only,
        workers=cfg.tokenize_workers,
        cache_dir=cfg.cache_dir,
    )
    with state.main_process_first():  # the others then read the main process's cache entry
        data = load_encoded(cfg.data, tokenizer, **enc)
        eval_data = load_encoded(cfg.eval_data, tokenizer, **enc) if cfg.eval_data else None
    return Prepared(base, saved_dtype, tokenizer, info, data, eval_data)


def check_resume(meta: dict[str, Any], cfg: TrainConfig, data_files: tuple[dict[str, Any], ...], world: int, where: Path) -> None:
    old = [f["sha256"] for f in meta.get("data_files", [])]
    if old != [f["sha256"] for f in data_files]:
        raise SftevalError("the training data changed since this checkpoint", path=str(where), hint="resume with the same --data")
    conf = meta.get("config", {})
    changed = [k for k in BATCH_KNOBS if k in conf and conf[k] != getattr(cfg, k)]
    if meta.get("counts", {}).get("world_size", world) != world:
        changed.append("number of processes")
    if conf.get("lora", {}).get("enabled", False) != cfg.lora.enabled:
        changed.append("lora.enabled")
    if changed:
        raise SftevalError(
            f"cannot resume with different {', '.join(changed)}: the batches after step {meta.get('step')} would differ",
            path=str(where),
            hint="resume with the settings of the checkpoint, or start a new --output",
        )


def trim_log(path: Path, upto_step: int) -> None:
    """On resume, drop log lines past the checkpoint (the crashed run's tail)."""
    import json

    from sfteval.fileio import atomic_write_text

    if not path.is_file():
        return
    keep = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(raw).get("step", 0) <= upto_step:
                keep.append(raw + "\n")
        except json.JSONDecodeError:
            continue  # a torn last line
    atomic_write_text(path, "".join(keep))


def trained_end_ids(samples: Any, end_ids: frozenset[int]) -> list[int]:
    """The end-of-turn ids that are supervised somewhere: the checkpoint's generation config stops on them."""
    import numpy as np

    if not samples:
        return []
    ids = np.concatenate([s.input_ids[s.mask] for s in samples])
    return sorted(int(i) for i in np.unique(ids) if int(i) in end_ids)


def dry_run(cfg: TrainConfig, *, color: bool = False) -> str:
    """Encode the data and show two examples with their supervised spans; no model, no output."""
    from sfteval.train.data import preview
    from sfteval.train.distributed import partial_state

    p = prepare(cfg.validate(), partial_state())
    text = f"base {p.base} ({p.saved_dtype}), chat template {p.template.source}\n" + preview(p.data, p.tokenizer, color=color)
    if p.eval_data is not None:
        text += "\neval: " + preview(p.eval_data, p.tokenizer, n=0)
    return text
