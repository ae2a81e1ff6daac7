"""Loading the model to train: the base (checked before anything heavy), LoRA / QLoRA, resume weights.

- The base is a local folder (recorded as its absolute path) or a hub id (recorded with
  its revision). A missing folder, or an id that cannot be resolved, is one clear error
  line, not a traceback.
- Full fine-tuning trains fp32 weights (the master copy; `precision = "bf16"` adds bf16
  autocast). Checkpoints are cast back to the base's own dtype (`saved_dtype`), so a bf16
  base gives a bf16 checkpoint of the same size.
- LoRA: the frozen base is loaded in bf16 under `precision = "bf16"` (fp32 otherwise);
  adapter weights stay fp32. QLoRA (`lora.qlora`): a 4-bit NF4 base through bitsandbytes,
  on a CUDA GPU only; elsewhere a clear refusal before the weights load.
- Resume: full weights come from the checkpoint folder itself (or the fp32 master copy in
  its resume state when the checkpoint was cast down); LoRA resumes its adapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sfteval.errors import SftevalError
from sfteval.train.config import TrainConfig

DTYPES = {"float32": "float32", "bfloat16": "bfloat16", "float16": "float16", "fp32": "float32", "bf16": "bfloat16"}


def resolve_base(model: str) -> str:
    """Absolute path for a local folder, the id itself for a hub id; a clear error otherwise."""
    p = Path(model).expanduser()
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise SftevalError("no config.json in the model folder", path=str(p.resolve()), field="model", hint="pass a folder written by save_pretrained")
        return str(p.resolve())
    # hub ids are NAME or ORG/NAME; anything else is meant as a folder
    looks_local = model.startswith((".", "/", "~")) or model.count("/") > 1 or p.exists()
    if looks_local:
        raise SftevalError("no model folder here", path=model, field="model", hint="pass an existing folder or a hub id ORG/NAME")
    return model


def base_dtype_name(model: str, revision: str | None) -> str:
    """The dtype the base is stored in ('float32' when the config does not say)."""
    from transformers import AutoConfig

    try:
        conf = AutoConfig.from_pretrained(model, revision=revision)
    except (OSError, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SftevalError(f"cannot load the model config: {first}", path=model, field="model") from e
    raw = getattr(conf, "dtype", None) or getattr(conf, "torch_dtype", None) or "float32"
    name = str(raw).replace("torch.", "")
    return DTYPES.get(name, "float32")


def check_qlora() -> None:
    import torch

    if not torch.cuda.is_available():
        raise SftevalError(
            "QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); none is available here",
            field="lora.qlora",
            hint="drop --lora-qlora (LoRA on a bf16 base with --precision bf16 also saves memory)",
        )
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as e:
        raise SftevalError("QLoRA needs bitsandbytes", field="lora.qlora", hint="pip install bitsandbytes") from e


def load_model(cfg: TrainConfig, base: str, *, resume_from: Path | None = None, master: Path | None = None) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"revision": cfg.model_revision, "dtype": torch.float32}
    if cfg.lora.enabled and cfg.precision == "bf16":
        kwargs["dtype"] = torch.bfloat16
    if cfg.lora.qlora:
        check_qlora()
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=True
        )
        kwargs["dtype"] = torch.bfloat16
    source = str(resume_from) if resume_from is not None and not cfg.lora.enabled and master is None else base
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SftevalError(f"cannot load the model: {first}", path=source, field="model") from e
    if master is not None and not cfg.lora.enabled:
        from safetensors.torch import load_file

        missing, unexpected = model.load_state_dict(load_file(str(master)), strict=False)
        if unexpected or any(k not in _tied_keys(model) for k in missing):
            raise SftevalError("the resume state's weights do not fit the model", path=str(master))
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    if cfg.lora.enabled:
        model = _add_lora(model, cfg, resume_from)
    return model


def _tied_keys(model: Any) -> set[str]:
    seen: dict[int, str] = {}
    tied = set()
    for k, v in model.state_dict(keep_vars=True).items():
        ptr = v.data_ptr()
        if ptr in seen:
            tied.add(k)
        else:
            seen[ptr] = k
    return tied


def _add_lora(model: Any, cfg: TrainConfig, resume_from: Path | None) -> Any:
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if cfg.lora.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=cfg.gradient_checkpointing)
    elif cfg.gradient_checkpointing:
        model.enable_input_require_grads()
    targets = "all-linear" if cfg.lora.target_modules == ("all-linear",) else list(cfg.lora.target_modules)
    lora = LoraConfig(r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout, target_modules=targets, task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    if resume_from is not None:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(model, load_file(str(resume_from / "adapter_model.safetensors")))
    return model


def unique_state(state: dict[str, Any]) -> dict[str, Any]:
    """Drop keys sharing storage with an earlier key (tied weights): safetensors stores each once."""
    seen: set[int] = set()
    out = {}
    for k, v in state.items():
        ptr = v.data_ptr()
        if ptr in seen:
            continue
        seen.add(ptr)
        out[k] = v
    return out


def save_merged(base: str, revision: str | None, dtype_name: str, adapter_dir: Path, dest: Path) -> None:
    """The adapter folded into a fresh copy of the base in its own dtype (not the bf16/4-bit training copy)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, revision=revision, dtype=getattr(torch, dtype_name))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(dest, safe_serialization=True)
