"""Whole runs of sfteval.train.sft.train on the tiny model: checkpoints, resume, logs, LoRA, config."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.train.config import TrainConfig, config_from_args, load_config
from sfteval.train.sft import train

REPO = Path(__file__).resolve().parents[2]
LOG_KEYS = {"step", "epoch", "train_loss", "lr", "grad_norm", "tokens_per_s", "supervised_tokens"}


def weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(folder.glob("*.safetensors")):
        out.update(load_file(f))
    return out


def base_cfg(model: Path, data: dict[str, Path], out: Path, **kw) -> TrainConfig:
    defaults = dict(
        model=str(model),
        data=(str(data["train"]),),
        eval_data=(str(data["eval"]),),
        output=str(out),
        micro_batch_size=2,
        grad_accum=2,
        max_steps=6,
        lr=3e-3,
        warmup_steps=1,
        save_steps=3,
        keep_last=3,
        progress=False,
    )
    defaults.update(kw)
    return TrainConfig(**defaults)


@pytest.fixture(scope="module")
def dropout_model(tiny_model: Path, tmp_path_factory) -> Path:
    """The tiny model with attention dropout, so resume must restore the RNG too."""
    dst = tmp_path_factory.mktemp("drop") / "model"
    shutil.copytree(tiny_model, dst)
    cfg = json.loads((dst / "config.json").read_text())
    cfg["attention_dropout"] = 0.1
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


def test_resumed_run_ends_with_the_same_weights_and_a_complete_checkpoint(dropout_model, sft_data, tmp_path):
    import torch

    a = tmp_path / "a"
    res = train(base_cfg(dropout_model, sft_data, a))
    assert res.steps == 6 and Path(res.final_checkpoint).name == "checkpoint-6"

    # stop after step 3: the newest complete checkpoint is checkpoint-3, plus a torn save
    b = tmp_path / "b"
    shutil.copytree(a, b)
    shutil.rmtree(b / "checkpoint-6")
    (b / ".tmp-checkpoint-6").mkdir()  # a save cut off by the crash
    with (b / "train_log.jsonl").open("a") as f:
        f.write('{"step": 4, "train_loss": 9.9}\n')  # logged by the crashed run after the save
    train(base_cfg(dropout_model, sft_data, b, resume=True))
    wa, wb = weights(a / "checkpoint-6"), weights(b / "checkpoint-6")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=1e-7)
    assert not (b / ".tmp-checkpoint-6").exists()
    steps = [json.loads(x)["step"] for x in (b / "train_log.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]

    # what a checkpoint says about itself
    ck = a / "checkpoint-6"
    meta = json.loads((ck / "sfteval.json").read_text())
    assert meta["schema"] == "sfteval.checkpoint/1" and meta["step"] == 6 and meta["base_model"] == str(dropout_model.resolve())
    assert meta["data_files"][0]["sha256"] and meta["counts"]["samples"] == 24 and meta["dropped"] == {}
    assert meta["config"]["micro_batch_size"] == 2 and meta["packages"]["torch"]
    assert meta["train_loss"] is not None and meta["eval_loss"] is not None and "git_sha" in meta
    gen = json.loads((ck / "generation_config.json").read_text())
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ck)
    assert tok.convert_tokens_to_ids("<|im_end|>") in gen["eos_token_id"] and gen["pad_token_id"] not in gen["eos_token_id"]
    assert tok.chat_template and (ck / "resume_state").is_dir()
    rows = [json.loads(x) for x in (a / "train_log.jsonl").read_text().splitlines()]
    assert all(LOG_KEYS <= r.keys() for r in rows) and "eval_loss" in rows[-1]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]  # it learns


def test_rotation_keeps_the_newest(tiny_model, sft_data, tmp_path):
    train(base_cfg(tiny_model, sft_data, tmp_path / "out", max_steps=4, save_steps=1, keep_last=2, eval_data=()))
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.is_dir()) == ["checkpoint-3", "checkpoint-4"]


def test_lora_saves_adapter_and_an_equivalent_merged_model(tiny_model, sft_data, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from sfteval.train.config import LoraSettings

    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, save_merged=True)
    res = train(base_cfg(tiny_model, sft_data, tmp_path / "out", max_steps=2, save_steps=None, lora=lora, packing=True, cutoff_len=128,
                         gradient_checkpointing=True, eval_data=()))
    ck = Path(res.final_checkpoint)
    trained_b = [v for k, v in weights(ck).items() if "lora_B" in k]
    assert trained_b and all(float(v.abs().sum()) > 0 for v in trained_b)  # B starts at zero: it learned
    adapter = json.loads((ck / "adapter_config.json").read_text())
    assert json.loads((ck / "sfteval.json").read_text())["adapter"] is True
    names = {t.rsplit(".", 1)[-1] for t in adapter["target_modules"]}
    assert {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"} <= names  # all-linear
    ids = torch.tensor([[1, 3, 89, 928, 203, 76]])
    base = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    with torch.no_grad():
        via_adapter = PeftModel.from_pretrained(base, ck).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(res.merged_dir, dtype=torch.float32).eval()(ids).logits
    torch.testing.assert_close(via_adapter, merged, rtol=1e-4, atol=1e-5)


def test_resume_refuses_changed_data_or_batches(tiny_model, sft_data, tmp_path):
    out = tmp_path / "out"
    train(base_cfg(tiny_model, sft_data, out, max_steps=1, eval_data=()))
    with pytest.raises(SftevalError, match="cannot resume with different micro_batch_size"):
        train(base_cfg(tiny_model, sft_data, out, max_steps=2, resume=True, micro_batch_size=3, eval_data=()))
    sft_data["train"].write_text(sft_data["train"].read_text() + json.dumps({"instruction": "a", "output": "b"}) + "\n")
    with pytest.raises(SftevalError, match="data changed"):
        train(base_cfg(tiny_model, sft_data, out, max_steps=2, resume=True, eval_data=()))


def test_toml_knobs_and_flags_override(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('model = "m"\ndata = "d.jsonl"\noutput = "o"\nlr = 1e-4\npacking = true\n[lora]\nenabled = true\ntarget_modules = ["q_proj"]\n')
    cfg = config_from_args(["--config", str(toml), "--lr", "5e-4", "--no-packing", "--lora-r", "8"])
    assert cfg.lr == 5e-4 and cfg.packing is False and cfg.data == ("d.jsonl",)
    assert cfg.lora.enabled and cfg.lora.r == 8 and cfg.lora.target_modules == ("q_proj",)
    assert load_config(toml, lr=0.1).lr == 0.1
    toml.write_text('model = "m"\nlearning_rate = 1\n')
    with pytest.raises(SftevalError, match="learning_rate"):
        config_from_args(["--config", str(toml)])
    for example in sorted((REPO / "sfteval" / "train" / "configs").glob("*.toml")):
        assert load_config(example, model="m", data=["d.jsonl"], output="o").to_dict()


def test_bf16_run_trains(tiny_model, sft_data, tmp_path):
    res = train(base_cfg(tiny_model, sft_data, tmp_path / "out", max_steps=2, save_steps=None, precision="bf16", eval_data=()))
    assert res.train_loss is not None and res.train_loss == res.train_loss  # not NaN


@pytest.mark.slow
def test_command_line_run(tiny_model, sft_data, tmp_path):
    cmd = [sys.executable, str(REPO / "train" / "sft.py"), "--model", str(tiny_model), "--data", str(sft_data["train"]),
           "--output", str(tmp_path / "o"), "--max-steps", "2", "--micro-batch-size", "2", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "o" / "checkpoint-2" / "sfteval.json").is_file()
    bad = subprocess.run(cmd[:-1] + ["--micro-batch-size", "0"], capture_output=True, text=True, timeout=300)
    assert bad.returncode == 2 and "micro_batch_size" in bad.stderr


@pytest.mark.slow
def test_two_cpu_processes_match_one_with_the_same_global_batch(tiny_model, sft_data, tmp_path):
    """Two gloo processes (torchrun, which `accelerate launch` wraps on GPUs) vs one process.

    `accelerate launch --cpu --num_processes 2` starts ONE process on a machine without
    MPI (its simple launcher), so the processes come from torchrun with ACCELERATE_USE_CPU.
    """
    import os
    import socket

    common = ["--model", str(tiny_model), "--data", str(sft_data["train"]), "--max-steps", "3", "--lr", "3e-3",
              "--no-group-by-length", "--no-progress", "--grad-accum", "1"]
    one = subprocess.run([sys.executable, str(REPO / "train" / "sft.py"), *common, "--micro-batch-size", "4",
                          "--output", str(tmp_path / "one")], capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                          str(REPO / "train" / "sft.py"), *common, "--micro-batch-size", "2",
                          "--output", str(tmp_path / "two")], capture_output=True, text=True, timeout=600, env=env)
    assert two.returncode == 0, two.stderr
    logs = [[json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert [r["supervised_tokens"] for r in logs[0]] == [r["supervised_tokens"] for r in logs[1]]
    for r1, r2 in zip(*logs):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)
    meta = json.loads((tmp_path / "two" / "checkpoint-3" / "sfteval.json").read_text())
    assert meta["counts"]["world_size"] == 2
    import torch

    w1, w2 = weights(tmp_path / "one" / "checkpoint-3"), weights(tmp_path / "two" / "checkpoint-3")
    # The gradients agree to float rounding (the all-reduce sums in another order), but Adam
    # divides by sqrt(v) + eps: where a gradient is ~eps that rounding moves the update by a
    # visible fraction of lr. So: every weight within lr/30, and all but 0.1% within 1e-5.
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-4)
        off = ((w1[k] - w2[k]).abs() > 1e-5 + 1e-4 * w2[k].abs()).float().mean().item()
        assert off <= 1e-3, (k, off)


@pytest.mark.slow
def test_full_tiny_run_learns_its_answers_and_stops(tiny_model, tmp_path):
    """The end-to-end promise: the checkpoint answers as trained and ends the turn."""
    from sftdata import write_jsonl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    rows = [{"instruction": f"Say the word number {i}.", "output": w} for i, w in enumerate(["apple", "river", "stone", "cloud"])]
    data = write_jsonl(tmp_path / "mem.jsonl", rows)
    res = train(TrainConfig(model=str(tiny_model), data=(str(data),), eval_data=(str(data),), output=str(tmp_path / "o"),
                            micro_batch_size=4, max_steps=60, lr=1e-2, warmup_steps=5, progress=False))
    assert res.eval_loss < 0.1
    tok = AutoTokenizer.from_pretrained(res.final_checkpoint)
    model = AutoModelForCausalLM.from_pretrained(res.final_checkpoint)
    for r in rows:
        prompt = tok.apply_chat_template([{"role": "user", "content": r["instruction"]}], tokenize=False, add_generation_prompt=True)
        ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        out = model.generate(ids, max_new_tokens=10, do_sample=False)  # stops on generation_config's eos ids
        assert tok.decode(out[0, ids.shape[1]:]) == r["output"] + "<|im_end|>"
