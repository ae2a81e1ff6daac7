"""Atomic writes: whole or nothing, readable mode; JSONL errors name file and line."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.fileio import FILE_MODE, atomic_write_json, iter_jsonl, read_json, truncate_torn_tail


def test_atomic_write_replaces_whole_and_keeps_a_normal_mode(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"a": 1})
    atomic_write_json(target, {"a": 2})
    assert read_json(target) == {"a": 2}
    assert stat.S_IMODE(os.stat(target).st_mode) == FILE_MODE
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temp files left


def test_failed_write_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    atomic_write_json(target, {"ok": True})
    with pytest.raises(TypeError):
        atomic_write_json(target, {"bad": object()})
    assert read_json(target) == {"ok": True}
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_jsonl_errors_and_torn_tail(tmp_path: Path) -> None:
    p = tmp_path / "s.jsonl"
    p.write_text('{"a": 1}\n\n[1]\n')
    with pytest.raises(SftevalError, match=r"s.jsonl:3: expected a JSON object"):
        list(iter_jsonl(p))
    p.write_text('{"a": 1}\n{"a": 2')
    assert [o for _, o in iter_jsonl(p, tolerate_torn_tail=True)] == [{"a": 1}]
    truncate_torn_tail(p)
    assert p.read_text() == '{"a": 1}\n'
