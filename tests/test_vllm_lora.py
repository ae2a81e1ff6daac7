"""LoRA checkpoints on the vllm backend: merged into the base, scored like the HF backend.

A module of its own: vLLM keeps process-wide parallel state, so a second engine may
only start once the other test module's engine has been shut down.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from vllm_helpers import in_process_engine

from sfteval.backends.vllm import vllm_usable
from sfteval.config import EngineSettings
from sfteval.types import GenParams, GenRequest, LoglikRequest

HAVE_VLLM = vllm_usable()[0]
ENGINE = EngineSettings(dtype="float32", max_model_len=1024)


@pytest.fixture(scope="module")
def adapter(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A peft LoRA adapter on the tiny model with non-zero B, so it changes the outputs."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path_factory.mktemp("lora") / "adapter"
    torch.manual_seed(0)
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(out)
    return out


def test_merge_adapter_gives_the_hf_merged_model(adapter: Path, tiny_model: Path, tmp_path: Path) -> None:
    from sfteval.backends.hf import HFBackend
    from sfteval.backends.vllm import prepare_model

    load_dir, ad, tmp = prepare_model(str(adapter))
    assert ad == str(adapter) and (Path(load_dir) / "config.json").is_file()
    req = [LoglikRequest("<s>Question: pick.\nAnswer:", ("A", " Alpha beta"))]
    merged, via_peft, base = (HFBackend(p, ENGINE) for p in (load_dir, str(adapter), str(tiny_model)))
    a, b, c = (x.loglikelihood(req)[0].logprobs for x in (merged, via_peft, base))
    assert a == pytest.approx(b, abs=1e-5) and a != pytest.approx(c, abs=1e-4)  # the adapter matters
    tmp.cleanup()
    assert not Path(load_dir).exists()


@pytest.mark.vllm
def test_vllm_runs_a_lora_checkpoint_like_hf(adapter: Path) -> None:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.backends.hf import HFBackend
    from sfteval.backends.vllm import VLLMBackend

    reqs = [LoglikRequest("<s>Question: pick.\nAnswer:", ("A", "B", " Alpha beta"))]
    gen = [GenRequest("<s>Question: 1 + 1?\nAnswer:", GenParams(max_new_tokens=12))]
    hf = HFBackend(str(adapter), ENGINE)
    want_ll, want_gen = hf.loglikelihood(reqs), hf.generate(gen)
    hf.close()
    with in_process_engine():
        v = VLLMBackend(str(adapter), ENGINE)
    merged_dir = v._kwargs["model"]
    try:
        got_ll, got_gen = v.loglikelihood(reqs), v.generate(gen)
        assert v.info()["adapter"] == str(adapter)
    finally:
        v.close()
    assert got_ll[0].logprobs == pytest.approx(want_ll[0].logprobs, abs=1e-3)
    assert got_gen[0].texts == want_gen[0].texts
    assert not Path(merged_dir).exists()  # the merged copy is removed on close


