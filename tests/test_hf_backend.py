"""The `hf` backend on the tiny local model: log-likelihood paths agree with a direct
forward, batching does not change greedy outputs, stop strings and max_new_tokens give
the right finish reasons, no double BOS, and a peft LoRA adapter folder loads merged.

At its init scale the random tiny model only repeats its last token, which would hide
a padding bug; the generation tests re-draw its layers larger (seeded) so that the text
depends on the context.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path
from typing import Any

import pytest

torch = pytest.importorskip("torch")

from sfteval.backends.hf import HFBackend  # noqa: E402
from sfteval.config import EngineSettings  # noqa: E402
from sfteval.prompts import make_renderer  # noqa: E402
from sfteval.types import GenParams, GenRequest, LoglikRequest  # noqa: E402

CONTEXTS = [
    "The following are multiple choice questions.\n\nWhat is 2 + 2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:",
    "Question: How many minutes are there in 3 hours?\nAnswer:",
    "def add(a, b):\n    return",
]
PROMPTS = [
    "Question: What is 3 + 4?\nAnswer:",
    "def f(x):\n",
    "A. B. C. D. Answer:",
    "import random\nimport string\n\nclass",
    "The capital of France is",
    "for i in range(10):",
    "Question: Ben has 5 apples and buys 7 more. How many apples does Ben have?\nLet's think step by step.",
    "x",
]


@pytest.fixture(scope="module")
def backend(tiny_model: Path) -> HFBackend:
    return HFBackend(str(tiny_model), EngineSettings(dtype="float32", batch_size=8))


def _with_batch(b: HFBackend, size: int) -> HFBackend:
    b.engine = dataclasses.replace(b.engine, batch_size=size)
    return b


def _enc(b: HFBackend, text: str) -> list[int]:
    return b.tokenizer(text, add_special_tokens=False)["input_ids"]


def _one_and_multi(b: HFBackend, context: str) -> tuple[list[str], list[str]]:
    """Continuations that are one token after `context`, and ones that are several."""
    one, multi = [], []
    for cand in (" A", " B", " C", " D", " 4", " 7", " the", " return", " a + b", " hello world", " 180 minutes", " x"):
        n = len(_enc(b, context + cand)) - len(_enc(b, context))
        if _enc(b, context + cand)[: len(_enc(b, context))] != _enc(b, context):
            continue
        (one if n == 1 else multi).append(cand)
    assert len(one) >= 2 and len(multi) >= 2, (one, multi)
    return one, multi


def _direct(b: HFBackend, context: str, cont: str) -> float:
    """Sum of log p(continuation tokens) from one unpadded forward of context+continuation."""
    ctx, whole = _enc(b, context), _enc(b, context + cont)
    with torch.inference_mode():
        logits = b.model(input_ids=torch.tensor([whole])).logits[0].float()
    logp = torch.log_softmax(logits, -1)
    return float(sum(logp[k - 1, whole[k]] for k in range(len(ctx), len(whole))))


def test_one_token_path_matches_multi_token_path_and_direct_forward(backend: HFBackend) -> None:
    b = _with_batch(backend, 8)
    reqs = []
    for context in CONTEXTS:
        one, multi = _one_and_multi(b, context)
        reqs.append(LoglikRequest(context, tuple(one)))  # one-token only: one row, the context
        reqs.append(LoglikRequest(context, tuple(one + multi)))  # one-token read from a longer row
        reqs.append(LoglikRequest(context, tuple(multi)))  # longer only
    out = b.loglikelihood(reqs)
    for k in range(0, len(reqs), 3):
        only_one, mixed, only_multi = out[k], out[k + 1], out[k + 2]
        n_one = len(reqs[k].continuations)
        assert only_one.num_tokens == (1,) * n_one
        assert all(n > 1 for n in only_multi.num_tokens)
        assert mixed.logprobs[:n_one] == pytest.approx(only_one.logprobs, abs=1e-4)
        assert mixed.logprobs[n_one:] == pytest.approx(only_multi.logprobs, abs=1e-4)
        # The mixed request holds every continuation; the other two equal it (above).
        direct = [_direct(b, reqs[k + 1].context, c) for c in reqs[k + 1].continuations]
        assert mixed.logprobs == pytest.approx(direct, abs=1e-4)
    # One request at a time (no padding) gives the same numbers as the padded batch.
    alone = [_with_batch(b, 1).loglikelihood([r])[0] for r in reqs]
    _with_batch(b, 8)
    for a, batched in zip(alone, out):
        assert a.logprobs == pytest.approx(batched.logprobs, abs=1e-4)
        assert a.is_greedy == batched.is_greedy


def test_is_greedy_marks_the_argmax_continuation(backend: HFBackend) -> None:
    b = _with_batch(backend, 8)
    context = CONTEXTS[1]
    with torch.inference_mode():
        logits = b.model(input_ids=torch.tensor([_enc(b, context)])).logits[0, -1]
    top = b.tokenizer.decode([int(logits.argmax())])
    other = " A" if top != " A" else " B"
    res = b.loglikelihood([LoglikRequest(context, (top, other))])[0]
    if _enc(b, context + top)[: len(_enc(b, context))] == _enc(b, context) and res.num_tokens[0] == 1:
        assert res.is_greedy[0] is True
    assert res.is_greedy[1] is False


@pytest.fixture(scope="module")
def lively(tiny_model: Path) -> HFBackend:
    """The tiny model with its layers re-drawn at a larger scale (seeded).

    At the init scale the tied embeddings dominate and the model repeats its last token
    whatever the context; larger layer weights give context-dependent text, so a
    padding or position bug changes the output and float noise does not.
    """
    b = HFBackend(str(tiny_model), EngineSettings(dtype="float32", batch_size=8))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in b.model.named_parameters():
            if p.dim() == 2 and "embed" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 4.0 / p.shape[1] ** 0.5)
    return b


def test_batch_composition_does_not_change_greedy_outputs(lively: HFBackend) -> None:
    params = GenParams(max_new_tokens=12, temperature=0.0)
    reqs = [GenRequest(p, params) for p in PROMPTS]
    batched = _with_batch(lively, 8).generate(reqs)
    alone = [_with_batch(lively, 1).generate([r])[0] for r in reqs]
    _with_batch(lively, 8)
    assert [g.texts for g in batched] == [g.texts for g in alone]
    assert [g.finish_reasons for g in batched] == [g.finish_reasons for g in alone]
    assert len({g.texts[0] for g in batched}) == len(PROMPTS)  # context-dependent, not degenerate


def test_stop_string_cuts_text_and_says_stop(lively: HFBackend) -> None:
    b = _with_batch(lively, 8)
    free = b.generate([GenRequest(p, GenParams(max_new_tokens=24)) for p in PROMPTS])
    checked = 0
    for prompt, g in zip(PROMPTS, free):
        text = g.texts[0]
        if g.finish_reasons != ("length",) or len(text) < 12:
            continue
        stop = text[len(text) // 2 : len(text) // 2 + 3]  # from the middle of the unstopped output
        got = b.generate([GenRequest(prompt, GenParams(max_new_tokens=24, stop=("never-seen", stop)))])[0]
        assert got.finish_reasons == ("stop",)
        assert got.texts == (text[: text.find(stop)],)
        assert got.num_tokens[0] < g.num_tokens[0]
        checked += 1
    assert checked >= 3


def test_stop_string_is_not_matched_across_the_prompt_boundary(backend: HFBackend) -> None:
    # The untouched tiny model repeats its last token: after "Answer:" it writes ":::".
    b = _with_batch(backend, 8)
    prompt = "Question: What is 3 + 4?\nAnswer:"
    free = b.generate([GenRequest(prompt, GenParams(max_new_tokens=6))])[0]
    assert free.texts[0].startswith("::")
    # "Answer:" + ":" already ends in "::"; only the generated text may match.
    got = b.generate([GenRequest(prompt, GenParams(max_new_tokens=6, stop=("::",)))])[0]
    assert got.finish_reasons == ("stop",)
    assert got.texts == ("",)
    assert got.num_tokens[0] >= 1


def test_max_new_tokens_says_length(lively: HFBackend) -> None:
    b = _with_batch(lively, 8)
    free = b.generate([GenRequest(p, GenParams(max_new_tokens=6)) for p in PROMPTS])
    lengths = [g for g in free if g.finish_reasons == ("length",)]
    assert len(lengths) >= len(PROMPTS) // 2, [g.finish_reasons for g in free]
    for g in lengths:
        assert g.num_tokens == (6,)


@pytest.fixture(scope="module")
def bos_model(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model, with a tokenizer that adds BOS itself (TemplateProcessing)."""
    from tokenizers import processors
    from transformers import AutoTokenizer

    out = tmp_path_factory.mktemp("bos") / "model"
    shutil.copytree(tiny_model, out)
    tok = AutoTokenizer.from_pretrained(str(out))
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{tok.bos_token} $A", pair=f"{tok.bos_token} $A $B", special_tokens=[(tok.bos_token, tok.bos_token_id)]
    )
    tok.save_pretrained(str(out))
    return out


def test_no_double_bos_when_the_tokenizer_adds_bos(bos_model: Path) -> None:
    b = HFBackend(str(bos_model), EngineSettings(dtype="float32", batch_size=4))
    bos = b.tokenizer.bos_token_id
    assert b.tokenizer("hi")["input_ids"][0] == bos  # the tokenizer really adds BOS
    renderer = make_renderer(b.tokenizer, "off")
    prompt = renderer.plain("Question: What is 3 + 4?\nAnswer:")
    assert prompt.startswith(b.tokenizer.bos_token)
    seen: list[list[int]] = []
    real_generate, real_forward = b.model.generate, b._forward

    def spy_generate(input_ids: Any, attention_mask: Any, **kw: Any) -> Any:
        seen.extend(row[mask.bool()].tolist() for row, mask in zip(input_ids, attention_mask))
        return real_generate(input_ids=input_ids, attention_mask=attention_mask, **kw)

    def spy_forward(ids: list[list[int]], keep: int) -> Any:
        seen.extend(ids)
        return real_forward(ids, keep)

    b.model.generate = spy_generate  # type: ignore[method-assign]
    b._forward = spy_forward  # type: ignore[method-assign]
    try:
        b.generate([GenRequest(prompt, GenParams(max_new_tokens=2)), GenRequest(renderer.plain("x"), GenParams(max_new_tokens=2))])
        b.loglikelihood([LoglikRequest(prompt, (" 7", " 8"))])
    finally:
        b.close()
    assert len(seen) == 3
    for ids in seen:
        assert ids[0] == bos and ids.count(bos) == 1, ids[:5]


def test_peft_lora_adapter_folder_loads_merged(tiny_model: Path, tmp_path: Path) -> None:
    peft = pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)
    lora = peft.get_peft_model(base, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], lora_dropout=0.0))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.5)  # B starts at zero; make the adapter change the model
    adapter = tmp_path / "adapter"
    lora.save_pretrained(str(adapter))
    AutoTokenizer.from_pretrained(str(tiny_model)).save_pretrained(str(adapter))
    assert (adapter / "adapter_config.json").is_file()

    ids = torch.tensor([AutoTokenizer.from_pretrained(str(tiny_model))("def f(x):\n    return x", add_special_tokens=False)["input_ids"]])
    with torch.inference_mode():
        want = lora(input_ids=ids).logits
        plain = AutoModelForCausalLM.from_pretrained(str(tiny_model), dtype=torch.float32)(input_ids=ids).logits

    b = HFBackend(str(adapter), EngineSettings(dtype="float32"))
    try:
        assert not isinstance(b.model, peft.PeftModel)  # merged and unloaded
        assert not any("lora" in n for n, _ in b.model.named_parameters())
        with torch.inference_mode():
            got = b.model(input_ids=ids).logits
    finally:
        b.close()
    assert torch.allclose(got, want, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)  # the adapter mattered
