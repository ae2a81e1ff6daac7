"""The in-process vLLM backend: pure mapping helpers (fast), the real engine (`vllm`),
and the HF-vs-vLLM agreement on the tiny model (greedy, fp32).

The engine tests run vLLM's engine core in this process (VLLM_ENABLE_V1_MULTIPROCESSING=0)
because spawning it re-imports torch and vLLM twice, which costs minutes on a busy
2-core machine; the multiprocess path is exercised by the server tests and perf runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from vllm_helpers import in_process_engine

from sfteval.backends.vllm import (
    continuation_score,
    engine_kwargs,
    map_finish,
    resolve_model,
    sampling_kwargs,
    split_continuation,
    vllm_usable,
)
from sfteval.backends.shared import encoder
from sfteval.config import EngineSettings, RunConfig
from sfteval.errors import SftevalError
from sfteval.types import GenParams, GenRequest, LoglikRequest

HAVE_VLLM = vllm_usable()[0]
ENGINE = EngineSettings(dtype="float32", max_model_len=1024)


# -- pure helpers: no engine -------------------------------------------------------------
def test_finish_reasons_map() -> None:
    assert map_finish("length", None) == "length"
    assert map_finish("stop", "Question:") == "stop"
    assert map_finish("stop", None) == "eos"  # the model's own EOS
    assert map_finish("stop", 4) == "eos"  # a generation-config end token (<|im_end|>)
    assert map_finish("abort", None) == "error"


def test_sampling_params_pass_through() -> None:
    kw = sampling_kwargs(GenParams(max_new_tokens=7, temperature=0.5, top_p=0.8, n=3, stop=("Q:",), seed=11))
    assert (kw["max_tokens"], kw["temperature"], kw["top_p"], kw["n"], kw["stop"], kw["seed"]) == (7, 0.5, 0.8, 3, ["Q:"], 11)
    assert sampling_kwargs(GenParams())["stop"] is None


def test_engine_settings_pass_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_CPU_KVCACHE_SPACE", raising=False)
    monkeypatch.delenv("SFTEVAL_VLLM_KV_CACHE_GIB", raising=False)
    e = EngineSettings(dtype="bfloat16", max_model_len=2048, tensor_parallel_size=2, data_parallel_size=2, gpu_memory_utilization=0.7)
    kw = engine_kwargs(e, "/m", on_cpu=False)
    assert kw == {"model": "/m", "dtype": "bfloat16", "tensor_parallel_size": 2, "data_parallel_size": 2, "seed": 0,
                  "max_model_len": 2048, "gpu_memory_utilization": 0.7}
    cpu = engine_kwargs(EngineSettings(), "/m", on_cpu=True)
    assert cpu["kv_cache_memory_bytes"] == 1 << 30 and cpu["enforce_eager"] and "gpu_memory_utilization" not in cpu
    assert cpu["dtype"] == "float32"  # our "auto", as the HF backend reads it, not vLLM's bf16 on a CPU
    monkeypatch.setenv("SFTEVAL_VLLM_KV_CACHE_GIB", "0.25")
    assert engine_kwargs(EngineSettings(), "/m", on_cpu=True)["kv_cache_memory_bytes"] == 1 << 28


def test_resolve_model_adapter(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    ad = tmp_path / "ad"
    ad.mkdir()
    assert resolve_model(str(base)) == (str(base), None, None)
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(base), "r": 8}))
    assert resolve_model(str(ad))[:2] == (str(base), str(ad))
    (ad / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "org/not-local"}))
    with pytest.raises(SftevalError, match="not in the hub cache"):  # a hub id: the cache, offline in tests
        resolve_model(str(ad))
    (ad / "adapter_config.json").write_text("{oops")
    with pytest.raises(SftevalError, match="adapter_config.json:1"):
        resolve_model(str(ad))
    with pytest.raises(SftevalError, match="checkpoint folder not found"):
        resolve_model(str(tmp_path / "missing"))


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


def test_split_continuation_handles_merges() -> None:
    assert split_continuation(encoder(CharTok()), "xy", "z") == ([120, 121], [122])
    # "a" + "b" merge across the boundary: the continuation is tokenized on its own
    assert split_continuation(encoder(CharTok()), "xa", "b") == ([120, 97], [98])


def test_continuation_score_reads_only_the_tail() -> None:
    lp = lambda v, r: SimpleNamespace(logprob=v, rank=r)  # noqa: E731
    prompt = [{}, {5: lp(-9.0, 7)}, {6: lp(-1.0, 1)}, {7: lp(-2.0, 1)}]
    assert continuation_score(prompt, 2, [6, 7]) == (-3.0, True, 2)
    prompt[3] = {7: lp(-2.0, 3)}
    assert continuation_score(prompt, 2, [6, 7]) == (-3.0, False, 2)


def test_usable_reports_a_reason() -> None:
    ok, why = vllm_usable()
    assert isinstance(ok, bool) and why


# -- the real engine ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Any:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.backends.vllm import VLLMBackend

    with in_process_engine():
        b = VLLMBackend(str(tiny_model), ENGINE)
    yield b
    b.close()
    b.close()  # twice is fine


@pytest.mark.vllm
def test_generate_maps_settings_and_reasons(engine: Any, tiny_model: Path) -> None:
    seen: list[int] = []
    reqs = [
        GenRequest("<s>Question: 2 + 3?\nAnswer:", GenParams(max_new_tokens=6)),
        GenRequest("<s>Question: 2 + 3?\nAnswer:", GenParams(max_new_tokens=6)),
        GenRequest("<s>hello", GenParams(max_new_tokens=5, n=3, temperature=1.0, seed=7)),
        GenRequest("<s>hello", GenParams(max_new_tokens=5, n=3, temperature=1.0, seed=7)),
        GenRequest("<s>" + "word " * 2000, GenParams(max_new_tokens=4)),  # longer than max_model_len
    ]
    g = engine.generate(reqs, progress=seen.append)
    assert len(g) == 5 and sum(seen) == 5
    assert g[0] == g[1] and g[0].finish_reasons in (("length",), ("eos",), ("stop",))
    assert g[0].num_tokens[0] <= 6
    assert len(g[2].texts) == 3 and g[2] == g[3]  # per-request seed: reproducible samples
    assert g[4].finish_reasons == ("error",)
    # A stop string taken from the greedy output itself must end the text before it.
    text = g[0].texts[0]
    if g[0].finish_reasons == ("length",) and len(text.strip()) > 2:
        stop = text.strip()[1:3]
        cut = engine.generate([GenRequest(reqs[0].prompt, GenParams(max_new_tokens=6, stop=(stop,)))])[0]
        assert cut.finish_reasons == ("stop",) and stop not in cut.texts[0]
        assert text.startswith(cut.texts[0])


@pytest.mark.vllm
def test_prompt_is_not_given_a_second_bos(engine: Any) -> None:
    ids = engine._encode(["<s>Question:"])[0]
    assert ids[0] == engine.tok.bos_token_id and ids.count(engine.tok.bos_token_id) == 1


@pytest.mark.vllm
def test_step_queries_equal_prompt_logprobs(engine: Any) -> None:
    """The default path (next-token log-probs of chosen ids on each prefix, prefixes
    shared) must give the numbers that vLLM's prompt log-probs give for the same tokens."""
    ctx = "<s>Question: pick one.\nAnswer:"
    reqs = [LoglikRequest(ctx, ("A", "B", "C", "D")), LoglikRequest(ctx, (" Alpha beta", "A", " Alpha gamma")),
            LoglikRequest("<s>Other context:", (" x y z",))]
    splits = [[split_continuation(encoder(engine.tok), r.context, c) for c in r.continuations] for r in reqs]
    assert all(len(c) == 1 for _, c in splits[0]) and len(splits[1][0][1]) > 1
    seen: list[int] = []
    from sfteval.backends.vllm_loglik import score_prompts, score_steps

    steps = score_steps(engine.llm, engine._lora, splits, [0, 1, 2], seen.append)
    slow = score_prompts(engine.llm, engine._lora, splits, [0, 1, 2], None)
    assert sum(seen) == 3
    for i in range(3):
        assert steps[i].logprobs == pytest.approx(slow[i].logprobs, abs=1e-4)
        assert steps[i].is_greedy == slow[i].is_greedy and steps[i].num_tokens == slow[i].num_tokens
    public = engine.loglikelihood(reqs)
    assert public[1].logprobs[1] == pytest.approx(public[0].logprobs[0], abs=1e-4)  # same "A" after the same context
    assert engine.info()["loglikelihood"] == "steps"


@pytest.mark.vllm
def test_info_records_engine_settings(engine: Any) -> None:
    info = engine.info()
    assert info["name"] == "vllm" and info["dtype"] == "float32" and info["max_model_len"] == 1024
    assert info["engine_args"]["tensor_parallel_size"] == 1


# -- agreement with the HF backend -------------------------------------------------------
def _disagreements(a: list[dict], b: list[dict], key: str) -> list[str]:
    out = []
    for x, y in zip(a, b):
        assert x["id"] == y["id"]
        if x[key] != y[key]:
            out.append(f"{x['id']}: hf={x[key]!r} vllm={y[key]!r}")
    return out


@pytest.mark.vllm
def test_hf_and_vllm_agree_on_the_tiny_model(engine: Any, tiny_model: Path, tmp_path: Path) -> None:
    """Greedy fp32 on the same prompts: >= 95% identical GSM8K-style outputs, >= 99%
    identical MMLU-style choices. Disagreements are listed item by item on failure."""
    from sfteval.backends.hf import HFBackend
    from sfteval.fileio import read_jsonl
    from sfteval.runner import execute_run

    cfg = RunConfig(checkpoint=str(tiny_model), benchmarks=("offline_gsm8k", "offline_mmlu"), out=str(tmp_path), engine=ENGINE)
    hf = HFBackend(str(tiny_model), ENGINE)
    try:
        hf_dir = execute_run(cfg, backend=hf)
    finally:
        hf.close()
    vl_dir = execute_run(cfg, backend=engine)
    rows = {d: {b: read_jsonl(d / "samples" / f"{b}.jsonl") for b in ("offline_gsm8k", "offline_mmlu")} for d in (hf_dir, vl_dir)}
    gen_diff = _disagreements(rows[hf_dir]["offline_gsm8k"], rows[vl_dir]["offline_gsm8k"], "output")
    mc_diff = _disagreements(rows[hf_dir]["offline_mmlu"], rows[vl_dir]["offline_mmlu"], "answer")
    n_gen, n_mc = len(rows[hf_dir]["offline_gsm8k"]), len(rows[hf_dir]["offline_mmlu"])
    print(f"\nagreement: gsm8k-style {n_gen - len(gen_diff)}/{n_gen}, mmlu-style {n_mc - len(mc_diff)}/{n_mc}")
    for line in gen_diff + mc_diff:
        print("  differs", line)
    assert n_gen >= 30 and n_mc >= 30
    assert (n_gen - len(gen_diff)) / n_gen >= 0.95, gen_diff
    assert (n_mc - len(mc_diff)) / n_mc >= 0.99, mc_diff
    fin = _disagreements(rows[hf_dir]["offline_gsm8k"], rows[vl_dir]["offline_gsm8k"], "finish_reason")
    assert len(fin) <= len(gen_diff), fin  # same text must mean the same reason to stop
