"""The rules every backend shares (continuation split, dtype, finish reasons, adapter
policy) are written once and every backend uses that one copy; the Protocol declares
what the runner relies on."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from sfteval.backends import BACKENDS, Backend, backend_class
from sfteval.backends import adapters, shared
from sfteval.errors import SftevalError


class CharTok:
    """Character tokenizer, except that "ab" merges into one token."""

    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        out, i = [], 0
        while i < len(text):
            if text.startswith("ab", i):
                out.append(1000)
                i += 2
            else:
                out.append(ord(text[i]))
                i += 1
        return {"input_ids": out}


@pytest.mark.parametrize(
    ("context", "continuation", "expected"),
    [
        ("xy", "z", ([120, 121], [122])),
        ("xa", "b", ([120, 97], [98])),  # a merge across the boundary: the continuation alone
        ("x", "ab", ([120], [1000])),  # a merge inside the continuation is kept
        ("x", "", ([120], [])),  # nothing added: the (empty) continuation alone, never the context's tail
    ],
)
def test_split_rule(context: str, continuation: str, expected: tuple[list[int], list[int]]) -> None:
    assert shared.split_continuation(shared.encoder(CharTok()), context, continuation) == expected


def test_every_backend_uses_the_one_copy_of_each_rule() -> None:
    from sfteval.backends import hf, openai, vllm, vllm_server

    for mod in (hf, openai, vllm):
        assert mod.split_continuation is shared.split_continuation, mod.__name__
        assert not any(n in vars(mod) for n in ("_split_ids", "_dtype")), mod.__name__
    for mod in (openai, vllm):
        assert mod.map_finish is shared.map_finish, mod.__name__
    for mod in (hf, vllm):
        assert mod.resolve_dtype is shared.resolve_dtype, mod.__name__
    assert vllm.prepare_model is adapters.prepare_model and vllm_server.encoder is shared.encoder


def test_dtype_rule() -> None:
    assert shared.resolve_dtype("auto", "cpu") == "float32"
    assert shared.resolve_dtype("bf16", "cpu") == "bfloat16" and shared.resolve_dtype("fp16", "cuda") == "float16"
    with pytest.raises(SftevalError, match="unknown dtype 'float8'"):
        shared.resolve_dtype("float8", "cpu")


def test_finish_reasons() -> None:
    m = shared.map_finish
    assert m("length", None) == "length" and m("stop", "Q:") == "stop" and m("stop", None) == "eos" and m("stop", 7) == "eos"
    assert m("stop", None, stop_reason_sent=False, had_stops=True) == "stop"
    assert m("stop", None, stop_reason_sent=False, had_stops=False) == "eos"
    assert m("abort") == "error"
    from typing import get_args

    from sfteval.types import FinishReason

    assert set(shared.GEN_FINISH_REASONS) == {"stop", "length", "eos", "error"} <= set(get_args(FinishReason))


def test_protocol_declares_what_the_runner_uses() -> None:
    for name in BACKENDS:
        cls = backend_class(name)
        assert isinstance(cls.chunk_size, int) and cls.chunk_size > 0, name
        params = list(inspect.signature(cls.__init__).parameters)
        assert params[:3] == ["self", "model_path", "engine"], name
        for method in ("generate", "loglikelihood", "info", "close"):
            assert callable(getattr(cls, method)), (name, method)
    assert "chunk_size" in Backend.__annotations__


def test_adapter_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SFTEVAL_ADAPTER_MODE", raising=False)
    assert adapters.adapter_mode("cuda", can_serve_lora=True) == "lora"
    assert adapters.adapter_mode("cpu", can_serve_lora=True) == "merge"
    assert adapters.adapter_mode("cuda", can_serve_lora=False) == "merge"
    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "lora")
    assert adapters.adapter_mode("cpu", can_serve_lora=True) == "lora"
    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "both")
    with pytest.raises(SftevalError, match="SFTEVAL_ADAPTER_MODE"):
        adapters.adapter_mode("cpu", can_serve_lora=True)
    assert adapters.lora_rank({"r": 8, "rank_pattern": {"q": 16}}) == 16


def test_hf_loads_an_adapter_without_a_tokenizer_from_its_local_base(tiny_model: Path, tmp_path: Path) -> None:
    """Before: hf refused the adapter ("no tokenizer") while vllm used the base's."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from sfteval.backends.hf import HFBackend, load_tokenizer
    from sfteval.types import LoglikRequest

    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model), LoraConfig(r=4, target_modules=["q_proj"], init_lora_weights=False))
    ad = tmp_path / "adapter"
    model.save_pretrained(ad)  # no tokenizer saved
    cfg = json.loads((ad / "adapter_config.json").read_text())
    assert Path(cfg["base_model_name_or_path"]) == tiny_model
    assert adapters.tokenizer_dir(str(ad)) == str(tiny_model)
    assert load_tokenizer(str(ad)).get_vocab() == load_tokenizer(str(tiny_model)).get_vocab()
    b = HFBackend(str(ad))
    assert b.info()["adapter_mode"] == "merge"
    assert b.loglikelihood([LoglikRequest("<s>Question:", (" A",))])[0].num_tokens == (1,)
