"""Fixtures for the trainer tests: tiny data files and the tiny tokenizer."""

from __future__ import annotations

from pathlib import Path

import pytest
from sftdata import alpaca_rows, write_jsonl


@pytest.fixture
def sft_data(tmp_path: Path) -> dict[str, Path]:
    return {
        "train": write_jsonl(tmp_path / "train.jsonl", alpaca_rows(24)),
        "eval": write_jsonl(tmp_path / "val.jsonl", alpaca_rows(6, seed=1)),
    }


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model: Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model)
