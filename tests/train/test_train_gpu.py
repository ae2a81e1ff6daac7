"""What only a GPU can prove: ZeRO-3 (DeepSpeed) matches DDP, QLoRA trains. Skipped, with the reason, elsewhere.

No GPU was lent while these were written: they have not been run yet. The CPU-side parts
(the DeepSpeed config the trainer builds, the QLoRA refusal) are in test_train_distributed.py
and test_train_config.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def _gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except ImportError:
        return 0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.skipif(_gpus() < 2, reason="needs 2 CUDA GPUs: DeepSpeed ZeRO-3 has no CPU engine here (no GPU was lent to this task)")
def test_zero3_matches_ddp_within_tolerance(tiny_model, sft_data, tmp_path):
    pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'sfteval[deepspeed]')")
    common = ["-m", "sfteval.train", "--model", str(tiny_model), "--data", str(sft_data["train"]), "--max-steps", "4",
              "--micro-batch-size", "2", "--grad-accum", "2", "--lr", "3e-3", "--no-group-by-length", "--no-progress", "--precision", "bf16"]
    logs = {}
    for name, extra in (("ddp", ["--strategy", "ddp"]), ("zero3", ["--strategy", "zero3"])):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_port()),
               *common, *extra, "--output", str(tmp_path / name)]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=900, cwd=REPO, env=dict(os.environ))
        assert done.returncode == 0, done.stderr[-4000:]
        logs[name] = [json.loads(x) for x in (tmp_path / name / "train_log.jsonl").read_text().splitlines()]
    for a, b in zip(logs["ddp"], logs["zero3"]):
        assert a["supervised_tokens"] == b["supervised_tokens"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=2e-2)  # bf16: loose
    from safetensors.torch import load_file

    w = load_file(str(tmp_path / "zero3" / "checkpoint-4" / "model.safetensors"))
    assert w and all(v.numel() > 0 for v in w.values())  # gathered, not the empty ZeRO-3 placeholders


@pytest.mark.slow
@pytest.mark.skipif(_gpus() < 1, reason="QLoRA needs a CUDA GPU (bitsandbytes 4-bit kernels); no GPU was lent to this task")
def test_qlora_trains_an_adapter_on_a_4bit_base(tiny_model, sft_data, tmp_path):
    pytest.importorskip("bitsandbytes", reason="bitsandbytes is not installed")
    from sfteval.train.config import LoraSettings, TrainConfig
    from sfteval.train.sft import train

    res = train(TrainConfig(model=str(tiny_model), data=(str(sft_data["train"]),), output=str(tmp_path / "o"), max_steps=2,
                            micro_batch_size=2, lr=1e-3, precision="bf16", progress=False,
                            lora=LoraSettings(enabled=True, qlora=True, r=4, alpha=8)))
    ck = Path(res.final_checkpoint)
    assert (ck / "adapter_model.safetensors").is_file() and not (ck / "model.safetensors").exists()
