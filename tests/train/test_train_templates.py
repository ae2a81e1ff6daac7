"""Templates and special tokens: TRL-style generation markers, marked headers, end/pad settings, dry run."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.types import Conversation, Message
from sftdata import write_jsonl
from sfteval.train.data import encode, encode_all, end_token_ids
from sfteval.train.templates import apply_settings

REPO = Path(__file__).resolve().parents[2]

# The layout of TRL's qwen2_5_training.jinja: the marked block holds the header newline,
# the content, <|im_end|> and a trailing newline.
QWEN25_TRAINING = (
    "{%- if messages[0]['role'] == 'system' %}{{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}"
    "{%- else %}{{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}{%- endif %}"
    "{%- for message in messages %}"
    "{%- if (message.role == 'user') or (message.role == 'system' and not loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\n' + message.content + '<|im_end|>' + '\n' }}"
    "{%- elif message.role == 'assistant' %}{{- '<|im_start|>assistant' }}"
    "{%- generation %}{{- '\n' + message.content + '<|im_end|>\n' }}{%- endgeneration %}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
MULTI = Conversation(
    "m",
    (Message("user", "hi there"), Message("assistant", "Hello you"), Message("user", "x"), Message("assistant", "y z")),
    "mem.jsonl:1",
)


def spans(tok, enc) -> list[str]:
    """Decoded runs of supervised tokens."""
    out, cur = [], []
    for t, m in zip(enc.input_ids.tolist(), enc.mask.tolist()):
        if m:
            cur.append(t)
        elif cur:
            out.append(tok.decode(cur))
            cur = []
    if cur:
        out.append(tok.decode(cur))
    return out


def test_trl_qwen25_training_template_supervises_exactly_the_assistant_texts(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = QWEN25_TRAINING
    enc = encode(MULTI, tok, end_token_ids(tok))  # refused before: "no end-of-turn token"
    assert spans(tok, enc) == ["Hello you<|im_end|>", "y z<|im_end|>"]


def test_a_marked_header_gets_no_labels(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'assistant' %}"
        "{% generation %}{{ '<|im_start|>assistant\n' + m['content'] + '<|im_end|>' }}{% endgeneration %}"
        "{% else %}{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>' }}{% endif %}{% endfor %}"
    )
    enc = encode(MULTI, tok, end_token_ids(tok))
    assert spans(tok, enc) == ["Hello you<|im_end|>", "y z<|im_end|>"]  # the header was trained before


def test_markers_around_the_wrong_turns_are_refused(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% generation %}{{ m['role'] + ': ' + m['content'] + '<|im_end|>' }}{% endgeneration %}{% endfor %}"
    )
    with pytest.raises(SftevalError, match="generation block"):
        encode(MULTI, tok, end_token_ids(tok))


def test_end_tokens_setting_makes_a_custom_end_of_turn_trainable(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.add_special_tokens({"additional_special_tokens": ["<|myend|>"]})
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] }}{% if m['role'] == 'assistant' %}{{ '<|myend|>' }}{% endif %}{{ '\n' }}{% endfor %}"
    with pytest.raises(SftevalError, match="end-of-turn"):
        encode(MULTI, tok, apply_settings(copy.deepcopy(tok), chat_template=None).end_ids)
    info = apply_settings(tok, chat_template=None, end_tokens=["<|myend|>"])
    assert spans(tok, encode(MULTI, tok, info.end_ids)) == [" Hello you<|myend|>", " y z<|myend|>"]
    with pytest.raises(SftevalError, match="end_tokens"):
        apply_settings(tok, chat_template=None, end_tokens=["<|nope|>"])


def test_pad_eos_and_named_or_file_templates(tiny_tokenizer, tmp_path):
    tok = copy.deepcopy(tiny_tokenizer)
    info = apply_settings(tok, chat_template="chatml_training", pad_token="<|im_end|>")
    assert info.source == "builtin:chatml_training" and tok.pad_token == "<|im_end|>"
    assert spans(tok, encode(MULTI, tok, info.end_ids)) == ["Hello you<|im_end|>", "y z<|im_end|>"]
    f = tmp_path / "t.jinja"
    f.write_text(QWEN25_TRAINING)
    assert apply_settings(tok, chat_template=str(f)).source == f"file:{f.resolve()}"
    with pytest.raises(SftevalError, match="pad_token"):
        apply_settings(tok, chat_template=None, pad_token="<|not-a-token|>")
    with pytest.raises(SftevalError, match="chat template not found"):
        apply_settings(tok, chat_template="no_such_template")


def test_on_bad_skip_covers_rows_the_template_cannot_render(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}{{ raise_exception('no system role') }}{% endif %}"
        "{{ '<|im_start|>' + m['role'] + '\n' + m['content'] + '<|im_end|>\n' }}{% endfor %}"
    )
    bad = Conversation("b", (Message("system", "S"), *MULTI.messages), "mem.jsonl:2")
    with pytest.raises(SftevalError, match="mem.jsonl:2"):
        encode_all([MULTI, bad], tok, cutoff_len=256, end_ids=end_token_ids(tok))
    kept, dropped, _ = encode_all([MULTI, bad], tok, cutoff_len=256, end_ids=end_token_ids(tok), on_bad="skip")
    assert len(kept) == 1 and sum(dropped.values()) == 1 and next(iter(dropped)).startswith("template: ")


def test_llama_factory_history_and_sharegpt_system_are_trained_on(tmp_path, tiny_tokenizer):
    from sfteval.train.tokencache import load_encoded

    alpaca = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "q2", "output": "a2", "history": [["q1", "a1"]], "system": "Be brief."}])
    share = write_jsonl(tmp_path / "s.jsonl", [{"system": "Be brief.", "conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}])
    ends = end_token_ids(tiny_tokenizer)
    a = load_encoded([str(alpaca)], tiny_tokenizer, cutoff_len=256, end_ids=ends).samples[0]
    s = load_encoded([str(share)], tiny_tokenizer, cutoff_len=256, end_ids=ends).samples[0]
    assert spans(tiny_tokenizer, a) == ["a1<|im_end|>", "a2<|im_end|>"]  # history was dropped before
    assert "Be brief." in tiny_tokenizer.decode(a.input_ids.tolist())
    assert "Be brief." in tiny_tokenizer.decode(s.input_ids.tolist())  # the top-level system was dropped before


@pytest.fixture
def eot_model(tiny_model, tmp_path) -> Path:
    """The tiny model folder whose tokenizer knows DeepSeek-Coder's <|EOT|> (tokenizer only: for --dry-run)."""
    from transformers import AutoTokenizer

    dst = tmp_path / "eot"
    shutil.copytree(tiny_model, dst)
    tok = AutoTokenizer.from_pretrained(dst)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", "<|EOT|>"]})
    tok.chat_template = None
    tok.save_pretrained(dst)
    (dst / "chat_template.jinja").unlink(missing_ok=True)
    return dst


def test_dry_run_prints_two_examples_with_supervised_spans_and_counts(eot_model, tmp_path):
    rows = [{"instruction": f"Write {i}.", "output": f"print({i})"} for i in range(5)]
    rows.append({"instruction": "x " * 400, "output": "y"})
    data = write_jsonl(tmp_path / "d.jsonl", rows)
    cmd = [sys.executable, "-m", "sfteval.train", "--model", str(eot_model), "--data", str(data), "--output", str(tmp_path / "o"),
           "--chat-template", "deepseek_coder", "--end-tokens", "<|EOT|>", "--cutoff-len", "64", "--dry-run", "--cache-dir", "none"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "chat template builtin:deepseek_coder" in out
    assert "[[print(0)\n<|EOT|>]]" in out and "[[print(1)\n<|EOT|>]]" in out and "print(2)" not in out
    assert "dropped 1" in out and "dropped[response_too_long] = 1" in out and "truncated 0" in out
    assert not (tmp_path / "o").exists()  # a dry run writes nothing


def test_span_mask_is_the_any_character_in_a_span_rule():
    """The numpy mask equals the rule it replaced, on the edges: a token straddling a span's
    start or end is trained, a token ending exactly at a span's start is not, empty
    (zero-width) tokens never are, and no spans mark nothing."""
    import random

    from sfteval.train.masks import span_mask

    def rule(offsets, spans):
        return [e > b and any(b < se and e > ss for ss, se in spans) for b, e in offsets]

    assert span_mask([(0, 3), (3, 5), (5, 5), (5, 9)], [(3, 6)]).tolist() == [False, True, False, True]
    assert span_mask([(0, 2), (2, 4)], []).tolist() == [False, False]
    assert span_mask([], [(0, 1)]).tolist() == []
    rng = random.Random(0)
    for _ in range(200):
        cuts = sorted(rng.sample(range(60), rng.randint(1, 20)))
        offsets = [(a, b) for a, b in zip([0, *cuts], cuts)] + [(cuts[-1], cuts[-1])]
        spans = [tuple(sorted(rng.sample(range(61), 2))) for _ in range(rng.randint(0, 3))]
        assert span_mask(offsets, spans).tolist() == rule(offsets, spans)
