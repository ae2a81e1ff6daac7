"""Loss masks, truncation, bad rows, batch plans and packing (sfteval.train.data, sfteval.train.batching)."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.formats import load_conversations
from sfteval.tinymodel import CHAT_TEMPLATE
from sfteval.types import Conversation, Message
from sftdata import alpaca_rows, write_jsonl
from sfteval.train.batching import collate, pack, padding_waste, plan_epoch
from sfteval.train.data import DEFAULT_TEMPLATE, Encoded, encode, encode_all, end_token_ids, prepare_tokenizer, truncate

MULTI = Conversation(
    id="m",
    messages=(
        Message("system", "Be brief."),
        Message("user", "hi there"),
        Message("assistant", "Hello you"),
        Message("user", "x"),
        Message("assistant", "y z"),
    ),
    source="mem.jsonl:1",
)


def trained_text(tok, enc: Encoded) -> str:
    return tok.decode([t for t, m in zip(enc.input_ids, enc.mask) if m])


def test_markers_mask_trains_every_turn_and_its_end_token(tiny_tokenizer):
    ends = end_token_ids(tiny_tokenizer)
    enc = encode(MULTI, tiny_tokenizer, ends)
    assert trained_text(tiny_tokenizer, enc) == "Hello you<|im_end|>y z<|im_end|>"
    assert enc.input_ids[0] == tiny_tokenizer.bos_token_id and enc.input_ids[1] != tiny_tokenizer.bos_token_id
    last = encode(MULTI, tiny_tokenizer, ends, last_turn_only=True)
    assert trained_text(tiny_tokenizer, last) == "y z<|im_end|>"


def test_prefix_method_agrees_with_generation_markers(tiny_tokenizer):
    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = CHAT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    ends = end_token_ids(plain)
    assert encode(MULTI, plain, ends) == encode(MULTI, tiny_tokenizer, ends)


def test_default_template_trains_eos(tiny_model_no_template):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_no_template)
    assert prepare_tokenizer(tok) == "default" and tok.chat_template == DEFAULT_TEMPLATE
    enc = encode(MULTI, tok, end_token_ids(tok))
    assert trained_text(tok, enc) == "Hello you</s>y z</s>"


def test_pad_equal_to_eos_still_trains_eos(tiny_tokenizer):
    ends = end_token_ids(tiny_tokenizer)
    enc = truncate(encode(MULTI, tiny_tokenizer, ends), 512, tiny_tokenizer.bos_token_id)
    eos = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    short = Encoded(enc.input_ids[:3], (False, False, True))
    batch = collate([[enc], [short]], pad_id=eos, packed=False)  # pad with the end token itself
    labels = batch["labels"][0].tolist()
    assert labels[len(enc) - 1] == eos  # the final end-of-turn token is a label
    assert batch["labels"][1, 3:].eq(-100).all()  # padding never is


def merging_tokenizer(template: str | None):
    """A char-level BPE with ONE merge, '\\n' + 'T', across the prompt/response boundary."""
    from tokenizers import Tokenizer, decoders, models
    from transformers import PreTrainedTokenizerFast

    chars = sorted(set("### Instruction:\nResponse:TheanswrisfoAB?.\n 0123456789abcdefghijklmnopqrstuvwxyz<|>_"))
    vocab = {"<unk>": 0, "<pad>": 1, "<s>": 2, "</s>": 3}
    for c in chars:
        vocab.setdefault(c, len(vocab))
    vocab["\nT"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("\n", "T")], unk_token="<unk>"))
    tok.decoder = decoders.Fuse()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>")
    fast.chat_template = template
    return fast


@pytest.mark.parametrize("markers", [True, False], ids=["generation-markers", "prefix-render"])
def test_mask_is_right_where_separate_tokenization_is_wrong(markers):
    template = DEFAULT_TEMPLATE if markers else DEFAULT_TEMPLATE.replace("{% generation %}", "").replace("{% endgeneration %}", "")
    tok = merging_tokenizer(template)
    conv = Conversation("c", (Message("user", "What is A?"), Message("assistant", "The answer is B.")), "mem:1")
    enc = encode(conv, tok, end_token_ids(tok))
    merged = tok.convert_tokens_to_ids("\nT")
    first = int(enc.mask.argmax())
    assert enc.input_ids[first] == merged  # the boundary token carries the response's 'T'
    assert tok.decode([t for t, m in zip(enc.input_ids, enc.mask) if m]) == "\nThe answer is B.</s>"

    # The separate-tokenization approach (DeepSeek-Coder's) shifts the boundary here.
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is A?"}], tokenize=False, add_generation_prompt=True)
    naive_start = len(tok(prompt, add_special_tokens=False)["input_ids"])
    naive = tok.decode(list(enc.input_ids[naive_start:]))
    assert not naive.startswith("T") and "he answer" in naive  # the 'T' is never trained


def test_truncation_keeps_whole_turns_dropping_the_oldest_first(tiny_tokenizer):
    ends = end_token_ids(tiny_tokenizer)
    im_end = tiny_tokenizer.convert_tokens_to_ids("<|im_end|>")
    old = (Message("user", "old question " * 20), Message("assistant", "old answer " * 10))
    conv = Conversation("t", (Message("system", "Be brief."), *old, Message("user", "Now?"), Message("assistant", "Short answer.")), "mem:1")
    full = encode(conv, tiny_tokenizer, ends)
    assert len(full) > 40
    kept, dropped, truncated = encode_all([conv], tiny_tokenizer, cutoff_len=40, end_ids=ends)
    assert truncated == 1 and not dropped
    out = kept[0]
    # the system prompt and the last exchange, rendered whole: same ids as that shorter conversation
    short = Conversation("t", (Message("system", "Be brief."), Message("user", "Now?"), Message("assistant", "Short answer.")), "mem:1")
    want = encode(short, tiny_tokenizer, ends)
    assert out.input_ids.tolist() == want.input_ids.tolist()[: len(out)]
    assert out.input_ids[0] == tiny_tokenizer.bos_token_id
    assert trained_text(tiny_tokenizer, out) == "Short answer.<|im_end|>"  # no orphaned end token of the dropped turn
    assert out.input_ids[-1] == im_end  # the trailing newline is gone
    assert tiny_tokenizer.decode(out.input_ids.tolist()).count("<|im_start|>") == 3  # no header cut mid-way

    long = Conversation("l", (Message("user", "q"), Message("assistant", "answer " * 100)), "mem:2")
    kept, dropped, truncated = encode_all([conv, long], tiny_tokenizer, cutoff_len=40, end_ids=ends)
    assert len(kept) == 1 and dropped == {"response_too_long": 1} and truncated == 1
    assert all(k.n_supervised > 0 for k in kept)


def test_template_without_end_token_is_refused(tiny_tokenizer):
    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = "{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
    with pytest.raises(SftevalError, match="end-of-turn"):
        encode(MULTI, tok, end_token_ids(tok))


def test_bad_rows_name_file_and_line_or_are_counted(tmp_path: Path, tiny_tokenizer):
    from sfteval.train.tokencache import load_encoded

    rows = alpaca_rows(4)
    rows[2] = {"instruction": "no output here"}
    path = write_jsonl(tmp_path / "bad.jsonl", rows)
    with pytest.raises(SftevalError) as err:
        load_conversations(path)
    assert f"{path}:3" in str(err.value) and "output" in str(err.value)
    data = load_encoded([str(path)], tiny_tokenizer, on_bad="skip", cutoff_len=256, end_ids=end_token_ids(tiny_tokenizer))
    assert len(data.samples) == 3 and data.rows == 4 and data.dropped == {"bad_row: missing field": 1}


def test_length_grouping_cuts_padding_and_keeps_every_sample_once():
    lengths = [5 + (i * 37) % 300 for i in range(512)]
    plain = plan_epoch(lengths, micro_batch_size=8, seed=0, epoch=0)
    grouped = plan_epoch(lengths, micro_batch_size=8, seed=0, epoch=0, group_by_length=True)
    for plan in (plain, grouped):
        assert sorted(i for mb in plan for row in mb for i in row) == list(range(512))
    assert padding_waste(grouped, lengths) < 0.5 * padding_waste(plain, lengths)
    assert grouped == plan_epoch(lengths, micro_batch_size=8, seed=0, epoch=0, group_by_length=True)
    assert grouped != plan_epoch(lengths, micro_batch_size=8, seed=0, epoch=1, group_by_length=True)


def test_packing_rows_fit_and_positions_restart():
    lengths = [3, 5, 4, 2, 6]
    rows = pack(lengths, range(5), pack_len=8)
    assert rows == [[0], [1], [2, 3], [4]] or all(sum(lengths[i] for i in r) <= 8 for r in rows)
    assert sorted(i for r in rows for i in r) == list(range(5))
    a = Encoded((1, 10, 11), (False, True, True))
    b = Encoded((1, 20), (False, True))
    batch = collate([[a, b], [b]], pad_id=0, packed=True)
    assert batch["position_ids"].tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    assert "attention_mask" not in batch
    assert batch["labels"].tolist() == [[-100, 10, 11, -100, 20], [-100, 20, -100, -100, -100]]


def test_every_format_and_file_type_gives_the_same_samples(tmp_path: Path, tiny_tokenizer):
    import json

    from sfteval.train.tokencache import load_encoded

    qa = [("What is 2 + 3?", "5"), ("Name a colour.", "Blue.")]
    alpaca = [{"instruction": q, "output": a} for q, a in qa]
    sharegpt = [{"conversations": [{"from": "human", "value": q}, {"from": "gpt", "value": a}]} for q, a in qa]
    messages = [{"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]} for q, a in qa]
    files = [write_jsonl(tmp_path / "a.jsonl", alpaca), write_jsonl(tmp_path / "s.jsonl", sharegpt), write_jsonl(tmp_path / "m.jsonl", messages)]
    (tmp_path / "m.json").write_text(json.dumps(messages))
    files.append(tmp_path / "m.json")
    ends = end_token_ids(tiny_tokenizer)
    got = [[(s.input_ids.tolist(), s.mask.tolist()) for s in load_encoded([str(f)], tiny_tokenizer, cutoff_len=128, end_ids=ends).samples] for f in files]
    assert all(g == got[0] for g in got)


def test_importing_the_trainer_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, sfteval.train.sft, sfteval.train.data, sfteval.train.batching, sfteval.train.loop, sfteval.train.checkpoint; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
