"""Tokenization in several processes and its on-disk cache (sfteval.train.tokencache)."""

from __future__ import annotations

import copy
from pathlib import Path

from sftdata import alpaca_rows, write_jsonl
from sfteval.train.data import end_token_ids
from sfteval.train.tokencache import cache_key, encode_files


def enc(path: Path, tok, **kw):
    args = dict(fmt="auto", on_bad="error", cutoff_len=256, end_ids=end_token_ids(tok), last_turn_only=False, workers=1, cache_dir="none")
    args.update(kw)
    return encode_files([str(path)], tok, **args)


def same(a, b) -> bool:
    return (a.rows, a.dropped, a.truncated, len(a.samples)) == (b.rows, b.dropped, b.truncated, len(b.samples)) and all(
        x == y and x.source == y.source for x, y in zip(a.samples, b.samples)
    )


def test_several_processes_give_the_same_samples_in_the_same_order(tmp_path, tiny_tokenizer):
    data = write_jsonl(tmp_path / "d.jsonl", alpaca_rows(60))
    assert same(enc(data, tiny_tokenizer, workers=1), enc(data, tiny_tokenizer, workers=3))


def test_the_cache_returns_what_was_encoded_and_its_key_follows_every_input(tmp_path, tiny_tokenizer):
    data = write_jsonl(tmp_path / "d.jsonl", alpaca_rows(30))
    cache = tmp_path / "cache"
    cold = enc(data, tiny_tokenizer, cache_dir=str(cache))
    assert len(list(cache.glob("*.npz"))) == 1 and len(list(cache.glob("*.json"))) == 1
    warm = enc(data, tiny_tokenizer, cache_dir=str(cache))
    assert same(cold, warm) and warm.samples[0].input_ids.dtype.name == "int32"
    settings = {"fmt": "auto", "on_bad": "error", "cutoff_len": 256, "end_ids": sorted(end_token_ids(tiny_tokenizer)), "last_turn_only": False}
    key = cache_key([str(data)], tiny_tokenizer, settings)
    assert key != cache_key([str(data)], tiny_tokenizer, {**settings, "cutoff_len": 128})
    other = copy.deepcopy(tiny_tokenizer)
    other.chat_template = other.chat_template.replace("<|im_start|>", "<|im_start|> ")
    assert key != cache_key([str(data)], other, settings)
    write_jsonl(data, alpaca_rows(30, seed=5))
    assert key != cache_key([str(data)], tiny_tokenizer, settings)


def test_an_unreadable_entry_is_re_encoded_not_trusted(tmp_path, tiny_tokenizer):
    data = write_jsonl(tmp_path / "d.jsonl", alpaca_rows(10))
    cache = tmp_path / "cache"
    cold = enc(data, tiny_tokenizer, cache_dir=str(cache))
    entry = next(cache.glob("*.npz"))
    entry.write_bytes(entry.read_bytes()[:50])  # torn by a crash of some other writer
    assert same(cold, enc(data, tiny_tokenizer, cache_dir=str(cache)))
