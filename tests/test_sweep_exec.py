"""Sweep execution without an engine: when one engine may serve the next checkpoint
(engine_key), the switch/new-engine bookkeeping of SweepEngine, and the driver-side
writing of a Ray task's folder."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from sfteval.config import RunConfig
from sfteval.sweep_exec import SweepEngine, engine_key, finished_runs, write_folder


def _ckpt(root: Path, name: str, config: dict[str, Any], tok: str = "T", weights: str = "w") -> Path:
    p = root / name
    p.mkdir()
    (p / "config.json").write_text(json.dumps(config))
    (p / "tokenizer.json").write_text(tok)
    (p / "model.safetensors").write_text(weights)
    return p


def test_engine_key_ignores_weights_and_names_not_architecture_or_tokenizer(tmp_path: Path) -> None:
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128, "_name_or_path": "a", "transformers_version": "5"}
    a = _ckpt(tmp_path, "a", cfg, weights="1")
    b = _ckpt(tmp_path, "b", {**cfg, "_name_or_path": "b", "transformers_version": "6"}, weights="2")
    c = _ckpt(tmp_path, "c", {**cfg, "hidden_size": 256})
    d = _ckpt(tmp_path, "d", cfg, tok="other")
    assert engine_key(str(a)) == engine_key(str(b))
    assert engine_key(str(a)) != engine_key(str(c)) and engine_key(str(a)) != engine_key(str(d))


class FakeEngine:
    """Stands in for VLLMBackend: counts starts and switches."""

    name = "fake"
    chunk_size = 8
    log: list[str] = []

    def __init__(self, model_path: str, engine: Any) -> None:
        self.path = model_path
        FakeEngine.log.append(f"start {Path(model_path).name}")

    def switch_to(self, model_path: str) -> str:
        FakeEngine.log.append(f"reload {Path(model_path).name}")
        self.path = model_path
        return "weights reloaded into the running engine"

    def generate(self, requests: Any, progress: Any = None) -> list[str]:
        return [Path(self.path).name for _ in requests]

    loglikelihood = generate

    def info(self) -> dict[str, Any]:
        return {"name": "fake", "model": self.path}

    def close(self) -> None:
        FakeEngine.log.append(f"close {Path(self.path).name}")


def test_sweep_engine_reloads_compatible_and_restarts_otherwise(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = types.ModuleType("fake_engine_mod")
    mod.FakeEngine = FakeEngine  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_engine_mod", mod)
    monkeypatch.setitem(__import__("sfteval.backends", fromlist=["BACKENDS"]).BACKENDS, "fake", "fake_engine_mod:FakeEngine")
    FakeEngine.log = []
    cfg = {"architectures": ["LlamaForCausalLM"], "hidden_size": 128}
    a, b = _ckpt(tmp_path, "a", cfg), _ckpt(tmp_path, "b", cfg, weights="2")
    c = _ckpt(tmp_path, "c", {**cfg, "hidden_size": 64})
    eng = SweepEngine("fake", RunConfig(), "requested")
    eng.point_at(str(a))
    assert FakeEngine.log == []  # lazy: nothing opened until a request comes
    assert eng.generate([1]) == ["a"] and eng.info()["engine_reuse"]["path"] == "new engine (first checkpoint)"
    eng.point_at(str(b))
    assert eng.generate([1]) == ["b"] and eng.info()["engine_reuse"] == {
        "path": "weights reloaded into the running engine", "engines_started_in_sweep": 1}
    eng.point_at(str(c))
    assert eng.generate([1]) == ["c"] and eng.info()["engine_reuse"]["path"].startswith("new engine (architecture")
    eng.close()
    assert FakeEngine.log == ["start a", "reload b", "close b", "start c", "close c"]


def test_write_folder_replaces_atomically_and_hidden_folders_are_not_runs(tmp_path: Path) -> None:
    cfg = {"checkpoint": "/c", "out": str(tmp_path)}
    doc = {"schema": "sfteval.run/1", "config": cfg, "benchmarks": {}}  # what the run-folder reader accepts
    files = {"results.json": json.dumps(doc).encode(), "samples/b.jsonl": b"{}\n"}
    (tmp_path / "runs" / "r1").mkdir(parents=True)
    (tmp_path / "runs" / "r1" / "stale.txt").write_text("half a local run")
    d = write_folder(tmp_path, "r1", files)
    assert sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) == ["results.json", "samples/b.jsonl"]
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["r1"]
    (tmp_path / "runs" / ".r2.incoming-x").mkdir()
    (tmp_path / "runs" / ".r2.incoming-x" / "results.json").write_text(json.dumps(doc))
    assert list(finished_runs(tmp_path).values()) == [d]
    with pytest.raises(Exception, match="unsafe path"):
        write_folder(tmp_path, "r3", {"../evil": b"x"})
