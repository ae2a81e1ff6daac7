"""Shared fixtures: a tiny local model built once per session, never downloaded."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never touch a hub: fail fast instead of hanging on a network call.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Llama (head_dim 64) with a chat template."""
    from sfteval.tinymodel import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="session")
def tiny_model_no_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sfteval.tinymodel import TinySpec, build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny_nt") / "model", TinySpec(chat_template=False))
