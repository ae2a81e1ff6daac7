"""Sharding and accumulation: the seed's ZeRO-3 JSON, accelerate's accumulation flag, even eval shards, FSDP on gloo."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.train.config import CONFIG_DIR, TrainConfig
from sfteval.train.distributed import eval_shard, resolve_deepspeed_config

REPO = Path(__file__).resolve().parents[2]

# DeepSeek-Coder's finetune/configs/ds_config_zero3.json, as its users run it.
SEED_ZERO3 = {
    "bf16": {"enabled": "auto"},
    "optimizer": {"type": "AdamW", "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto"}},
    "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": "auto", "warmup_num_steps": "auto", "warmup_type": "linear", "warmup_min_ratio": 0.1}},
    "zero_optimization": {
        "stage": 3,
        "offload_optimizer": {"device": "cpu", "pin_memory": True},
        "offload_param": {"device": "cpu", "pin_memory": True},
        "overlap_comm": True,
        "contiguous_gradients": True,
        "sub_group_size": 1e9,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_max_live_parameters": 1e9,
        "stage3_max_reuse_distance": 1e9,
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 20,
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "wall_clock_breakdown": False,
}
SEED_CFG = TrainConfig(model="m", data=("d",), output="o", micro_batch_size=2, grad_accum=4, precision="bf16", lr=2e-5,
                       weight_decay=0.1, max_grad_norm=1.0, deepspeed_config="ds_config_zero3.json")


def resolve(raw=SEED_ZERO3, cfg=SEED_CFG, world=2):
    return resolve_deepspeed_config(raw, cfg, world=world, hidden_size=128, total_steps=100, warmup_steps=3, where="ds.json")


def test_the_seed_zero3_json_is_accepted_and_gives_a_valid_deepspeed_config():
    conf, built = resolve()
    assert "auto" not in json.dumps(conf)
    assert conf["train_micro_batch_size_per_gpu"] == 2 and conf["gradient_accumulation_steps"] == 4 and conf["train_batch_size"] == 16
    assert conf["gradient_clipping"] == 1.0 and conf["bf16"]["enabled"] is True  # max_grad_norm now reaches DeepSpeed
    assert conf["optimizer"]["params"] == {"lr": 2e-5, "betas": [0.9, 0.999], "eps": 1e-8, "weight_decay": 0.1}
    assert conf["scheduler"]["params"]["total_num_steps"] == 100 and conf["scheduler"]["params"]["warmup_num_steps"] == 3
    assert conf["zero_optimization"]["reduce_bucket_size"] == 128 * 128
    assert built == {"optimizer": "deepspeed (AdamW)", "scheduler": "deepspeed (WarmupCosineLR)"}
    deepspeed = pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'sfteval[deepspeed]')")
    from deepspeed.runtime.config import DeepSpeedConfig

    one_process, _ = resolve(world=1)  # DeepSpeedConfig takes the world size from torch.distributed: 1 here
    ds = DeepSpeedConfig(one_process)  # DeepSpeed's own parser and batch-size checks
    assert ds.zero_optimization_stage == 3 and ds.train_batch_size == 8 and ds.gradient_accumulation_steps == 4
    assert ds.gradient_clipping == 1.0 and ds.bfloat16_config.enabled and deepspeed.__version__


@pytest.mark.parametrize("name", ["zero2", "zero3"])
def test_the_shipped_zero_configs_resolve(name):
    raw = json.loads((CONFIG_DIR / f"{name}.json").read_text())
    conf, built = resolve(raw, TrainConfig(model="m", data=("d",), output="o", strategy=name), world=1)
    assert "auto" not in json.dumps(conf) and built["optimizer"] == "trainer (AdamW)"
    assert conf["zero_optimization"]["stage"] == int(name[-1]) and conf["bf16"]["enabled"] is False
    deepspeed = pytest.importorskip("deepspeed", reason="deepspeed is not installed (pip install 'sfteval[deepspeed]')")
    from deepspeed.runtime.config import DeepSpeedConfig

    assert DeepSpeedConfig(conf).train_batch_size == 4 and deepspeed


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"train_micro_batch_size_per_gpu": 8}, "train_micro_batch_size_per_gpu"),
        ({"gradient_accumulation_steps": 2}, "gradient_accumulation_steps"),
        ({"gradient_clipping": 0.5}, "gradient_clipping"),
        ({"optimizer": {"type": "Lamb", "params": {}}}, "optimizer.type"),
        ({"scheduler": {"type": "OneCycle", "params": {}}}, "scheduler.type"),
        ({"fp16": {"enabled": True}}, "fp16.enabled"),
        ({"zero_optimization": {"stage": 3, "sub_group_size": "auto"}}, "zero_optimization.sub_group_size"),
    ],
)
def test_a_contradiction_or_an_unfillable_auto_is_refused_naming_the_key(patch, field):
    with pytest.raises(SftevalError) as err:
        resolve({**SEED_ZERO3, **patch})
    assert f"field '{field}'" in str(err.value)


def test_eval_shards_are_even_and_cover_every_chunk_once():
    for n, world in ((7, 2), (5, 4), (8, 4), (1, 3)):
        shards = [eval_shard(n, r, world) for r in range(world)]
        assert len({len(s) for s in shards}) == 1  # the same number of forwards on every rank
        assert sorted(i for s in shards for i in s if i is not None) == list(range(n))


def test_padded_eval_batches_add_no_loss(tiny_model, sft_data):
    """A rank's padding pass (label-free repeat) changes neither the mean nor the count."""
    from transformers import AutoTokenizer

    from sfteval.train.data import end_token_ids
    from sfteval.train.tokencache import load_encoded
    from sfteval.train.plans import eval_batches as _eval_batches

    tok = AutoTokenizer.from_pretrained(tiny_model)
    data = load_encoded([str(sft_data["eval"])], tok, cutoff_len=256, end_ids=end_token_ids(tok))
    cfg = TrainConfig(model="m", data=("d",), output="o", micro_batch_size=4)  # 6 samples -> 2 chunks
    shards = [_eval_batches(data.samples, cfg, tok.pad_token_id, r, 3) for r in range(3)]
    assert [len(s) for s in shards] == [1, 1, 1]
    assert int((shards[2][0]["labels"] != -100).sum()) == 0
    assert sum(int((s[0]["labels"][:, 1:] != -100).sum()) for s in shards) == data.supervised_tokens


def _run(model: Path, data: Path, out: Path, env: dict[str, str] | None = None, extra: list[str] = ()) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "sfteval.train", "--model", str(model), "--data", str(data), "--output", str(out),
           "--max-steps", "2", "--micro-batch-size", "1", "--grad-accum", "4", "--lr", "3e-3", "--no-progress", "--cache-dir", "none", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env={**os.environ, **(env or {})})


@pytest.mark.slow
def test_accelerates_accumulation_flag_never_divides_again(tiny_model, sft_data, tmp_path):
    """`accelerate launch --gradient_accumulation_steps 4` sets this variable; the old trainer then
    divided the already-normalised loss by 4 again (grad_norm 4.69 -> 1.17)."""
    plain = _run(tiny_model, sft_data["train"], tmp_path / "plain")
    flagged = _run(tiny_model, sft_data["train"], tmp_path / "flag", {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "4"})
    assert plain.returncode == 0 and flagged.returncode == 0, plain.stderr + flagged.stderr
    logs = [[json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("plain", "flag")]
    for a, b in zip(*logs):
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-6) and a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
    bad = _run(tiny_model, sft_data["train"], tmp_path / "bad", {"ACCELERATE_GRADIENT_ACCUMULATION_STEPS": "2"})
    assert bad.returncode == 2 and "gradient_accumulation_steps is 2 but grad_accum is 4" in bad.stderr
    assert not (tmp_path / "bad").exists()


@pytest.mark.slow
def test_fsdp_on_two_gloo_processes_matches_one_process_with_the_same_global_batch(tiny_model, sft_data, tmp_path):
    """FSDP2 (full shard) through Accelerate on two CPU processes vs plain single-process training:
    same losses, same gathered weights after 3 steps, and a full (not empty) state dict on save."""
    import torch
    from safetensors.torch import load_file

    common = ["--model", str(tiny_model), "--data", str(sft_data["train"]), "--eval-data", str(sft_data["eval"]), "--max-steps", "3",
              "--lr", "3e-3", "--no-group-by-length", "--no-progress", "--grad-accum", "2", "--cache-dir", str(tmp_path / "cache")]
    one = subprocess.run([sys.executable, "-m", "sfteval.train", *common, "--micro-batch-size", "2", "--output", str(tmp_path / "one")],
                         capture_output=True, text=True, timeout=600, cwd=REPO)
    assert one.returncode == 0, one.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
                          "-m", "sfteval.train", *common, "--micro-batch-size", "1", "--strategy", "fsdp", "--output", str(tmp_path / "two")],
                         capture_output=True, text=True, timeout=600, env=env, cwd=REPO)
    assert two.returncode == 0, two.stderr[-4000:]
    logs = [[json.loads(x) for x in (tmp_path / d / "train_log.jsonl").read_text().splitlines()] for d in ("one", "two")]
    assert [r["supervised_tokens"] for r in logs[0]] == [r["supervised_tokens"] for r in logs[1]]
    for r1, r2 in zip(*logs):
        assert r1["train_loss"] == pytest.approx(r2["train_loss"], rel=1e-5)
        assert r1["grad_norm"] == pytest.approx(r2["grad_norm"], rel=1e-4)
    assert logs[0][-1]["eval_loss"] == pytest.approx(logs[1][-1]["eval_loss"], rel=1e-5)
    w1, w2 = load_file(str(tmp_path / "one" / "checkpoint-3" / "model.safetensors")), load_file(str(tmp_path / "two" / "checkpoint-3" / "model.safetensors"))
    assert w1.keys() == w2.keys()
    for k in w1:  # reduction order differs (reduce-scatter vs one process); Adam turns 1e-7 into ~1e-5 on tiny gradients
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=5e-5)
    meta = json.loads((tmp_path / "two" / "checkpoint-3" / "sfteval.json").read_text())
    assert meta["counts"]["world_size"] == 2 and meta["config"]["strategy"] == "fsdp"
    assert sorted(p.name for p in (tmp_path / "two" / "checkpoint-3" / "resume_state").iterdir()) == [
        "optimizer.bin", "random_states_0.pkl", "random_states_1.pkl", "scheduler.bin"]
