"""Prompt rendering: one BOS, recorded template use, the default template."""

from __future__ import annotations

import pytest

from sfteval.errors import SftevalError
from sfteval.prompts import make_renderer
from sfteval.types import Message


def test_chat_template_prompt_has_exactly_one_bos(tiny_model) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    r = make_renderer(tok, "auto")
    assert r.chat
    prompt = r.conversation([Message("user", "hi")])
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
    assert prompt.endswith("<|im_start|>assistant\n")
    assert r.info()["chat_template_sha256"]


def test_bos_added_as_text_when_the_tokenizer_adds_it(tiny_model) -> None:
    from tokenizers import processors
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model)
    tok._tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", tok.bos_token_id)])
    r = make_renderer(tok, "off")
    prompt = r.plain("Question: 1+1?")
    assert prompt.startswith("<s>")
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    assert ids.count(tok.bos_token_id) == 1
    chat = make_renderer(tok, "on").conversation([Message("user", "x")])
    assert tok(chat, add_special_tokens=False)["input_ids"].count(tok.bos_token_id) == 1


def test_modes(tiny_model_no_template) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_no_template)
    assert make_renderer(tok, "auto").chat is False
    with pytest.raises(SftevalError, match="no chat template"):
        make_renderer(tok, "on")
    with pytest.raises(SftevalError, match="unknown chat-template mode"):
        make_renderer(tok, "sometimes")
    prompt = make_renderer(tok, "auto").conversation([Message("system", "S"), Message("user", "Q")])
    assert prompt == "<s>S\n\n### Instruction:\nQ\n\n### Response:\n"


def test_eval_renders_conversations_exactly_as_the_trainer_trained_them(tiny_model_no_template) -> None:
    from transformers import AutoTokenizer

    from sfteval.train.data import prepare_tokenizer

    base = AutoTokenizer.from_pretrained(tiny_model_no_template)
    tuned = AutoTokenizer.from_pretrained(tiny_model_no_template)
    assert prepare_tokenizer(tuned) == "default"  # what the trainer saves into the checkpoint
    msgs = [Message("user", "Q")]
    assert make_renderer(base, "auto").conversation(msgs) == make_renderer(tuned, "auto").conversation(msgs)
