"""Checkpoints the size of the model: base dtype kept, weights stored once, LoRA adapter-only, absolute base."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from sfteval.train.config import LoraSettings, TrainConfig
from sfteval.train.sft import train


def cfg(model: Path, data: dict[str, Path], out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), data=(str(data["train"]),), output=str(out), micro_batch_size=2, max_steps=2,
                lr=3e-3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def weight_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.glob("*.safetensors"))


def all_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.fixture(scope="module")
def bf16_model(tiny_model: Path, tmp_path_factory) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = tmp_path_factory.mktemp("bf16") / "model"
    AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.bfloat16).save_pretrained(dst)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(dst)
    return dst


def test_a_bf16_base_gives_a_bf16_checkpoint_of_the_same_size(bf16_model, sft_data, tmp_path):
    import torch
    from safetensors import safe_open

    res = train(cfg(bf16_model, sft_data, tmp_path / "out", precision="bf16"))
    ck = Path(res.final_checkpoint)
    with safe_open(str(ck / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    assert abs(weight_bytes(ck) - weight_bytes(bf16_model)) <= 0.01 * weight_bytes(bf16_model)
    meta = json.loads((ck / "sfteval.json").read_text())
    assert meta["dtype"] == "bfloat16" and json.loads((ck / "config.json").read_text())["dtype"] == "bfloat16"
    # no second model copy: the resume state holds optimizer/RNG and, as the checkpoint was cast
    # down from the fp32 training copy, that master copy (the only way to resume bit-exactly)
    state = sorted(p.name for p in all_files(ck / "resume_state"))
    assert state == ["master_weights.safetensors", "optimizer.bin", "random_states_0.pkl", "scheduler.bin"]


def test_an_fp32_checkpoint_stores_its_weights_once(tiny_model, sft_data, tmp_path):
    res = train(cfg(tiny_model, sft_data, tmp_path / "out"))
    ck = Path(res.final_checkpoint)
    assert abs(weight_bytes(ck) - weight_bytes(tiny_model)) <= 0.01 * weight_bytes(tiny_model)
    state = sorted(p.name for p in all_files(ck / "resume_state"))
    assert state == ["optimizer.bin", "random_states_0.pkl", "scheduler.bin"]  # before: accelerate_state/model.safetensors too


def test_a_lora_checkpoint_is_the_size_of_its_adapter_with_an_absolute_base(tiny_model, sft_data, tmp_path, monkeypatch):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(tiny_model, work / "tiny")
    monkeypatch.chdir(work)
    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0)
    res = train(cfg(Path("tiny"), sft_data, tmp_path / "out", lora=lora, precision="bf16"))
    ck = Path(res.final_checkpoint)
    from safetensors import safe_open

    with safe_open(str(ck / "adapter_model.safetensors"), "pt") as f:
        n_adapter = sum(f.get_tensor(k).numel() for k in f.keys())
        assert all("lora_" in k for k in f.keys())
    adapter_bytes = (ck / "adapter_model.safetensors").stat().st_size
    assert adapter_bytes < 4 * n_adapter * 1.1 + 20_000
    big = [p for p in all_files(ck) if p.suffix in (".safetensors", ".bin") and p.stat().st_size > 3 * adapter_bytes + 20_000]
    assert big == []  # no copy of the base anywhere (before: accelerate_state/ held the full fp32 model)
    assert not (ck / "model.safetensors").exists() and not (tmp_path / "out" / "merged").exists()  # merged only when asked
    conf = json.loads((ck / "adapter_config.json").read_text())
    assert conf["base_model_name_or_path"] == str((work / "tiny").resolve())
    monkeypatch.chdir(tmp_path)  # evaluate from another directory: the recorded base still resolves
    base = AutoModelForCausalLM.from_pretrained(conf["base_model_name_or_path"], dtype=torch.float32)
    assert PeftModel.from_pretrained(base, ck) is not None


def test_lora_under_bf16_loads_the_frozen_base_in_bf16(tiny_model):
    import torch

    from sfteval.train.model import load_model

    c = TrainConfig(model=str(tiny_model), data=("d",), output="o", precision="bf16", lora=LoraSettings(enabled=True, r=4))
    model = load_model(c, str(tiny_model))
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    trained = {p.dtype for p in model.parameters() if p.requires_grad}
    assert frozen == {torch.bfloat16} and trained == {torch.float32}  # before: the base stayed fp32
    full = load_model(TrainConfig(model=str(tiny_model), data=("d",), output="o", precision="bf16"), str(tiny_model))
    assert {p.dtype for p in full.parameters()} == {torch.float32}  # full fine-tuning keeps an fp32 master copy


def test_resume_of_a_bf16_run_is_bit_exact(bf16_model, sft_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    a, b = tmp_path / "a", tmp_path / "b"
    train(cfg(bf16_model, sft_data, a, max_steps=4, save_steps=2, keep_last=3, precision="bf16"))
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoint-4")
    train(cfg(bf16_model, sft_data, b, max_steps=4, save_steps=2, keep_last=3, precision="bf16", resume=True))
    wa, wb = load_file(str(a / "checkpoint-4" / "model.safetensors")), load_file(str(b / "checkpoint-4" / "model.safetensors"))
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    ma = load_file(str(a / "checkpoint-4" / "resume_state" / "master_weights.safetensors"))
    mb = load_file(str(b / "checkpoint-4" / "resume_state" / "master_weights.safetensors"))
    for k in ma:
        torch.testing.assert_close(ma[k], mb[k], rtol=0, atol=0)
    assert os.path.getsize(a / "checkpoint-4" / "model.safetensors") == os.path.getsize(b / "checkpoint-4" / "model.safetensors")
