"""The trainer's settings: typed TOML, built-in config names, --help, clear errors before any model loads."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.train.config import TrainConfig, builtin_configs, build_parser, config_from_args, from_dict, load_config

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("raw", "key", "expected"),
    [
        ({"packing": "false"}, "packing", "true or false"),  # was truthy: packing turned ON
        ({"lr": "1e-4"}, "lr", "a number"),
        ({"micro_batch_size": 2.5}, "micro_batch_size", "an integer"),
        ({"micro_batch_size": True}, "micro_batch_size", "an integer"),
        ({"schedule": "cosin"}, "schedule", "one of 'linear', 'cosine', 'constant'"),
        ({"data": 3}, "data", "a list of strings"),
        ({"lora": {"r": "8"}}, "lora.r", "an integer"),
        ({"max_grad_norm": "none"}, "max_grad_norm", "a number or nothing"),
    ],
)
def test_a_wrong_type_names_the_key_and_the_expected_type(raw, key, expected, tmp_path):
    with pytest.raises(SftevalError) as err:
        from_dict(raw, path="c.toml")
    assert f"field '{key}'" in str(err.value) and f"expected {expected}" in str(err.value)
    toml = tmp_path / "c.toml"
    toml.write_text('packing = "false"\n')
    with pytest.raises(SftevalError, match=r"c.toml \(field 'packing'\): expected true or false, got str 'false'"):
        config_from_args(["--config", str(toml), "--model", "m", "--data", "d", "--output", "o"])


def test_ints_are_accepted_where_numbers_are_expected():
    cfg = from_dict({"lr": 1, "max_grad_norm": 2, "warmup_ratio": 0})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float) and cfg.max_grad_norm == 2.0


def test_config_by_builtin_name_or_readme_path():
    assert {"tiny", "full", "lora", "qlora", "fsdp", "zero2", "zero3"} <= set(builtin_configs())
    for name in ("zero3", "zero3.toml", "train/configs/full.toml", "sfteval/train/configs/lora.toml"):
        cfg = config_from_args(["--config", name, "--model", "m", "--data", "d", "--output", "o"])
        assert cfg.model == "m"
    assert config_from_args(["--config", "zero3", "--model", "m", "--data", "d", "--output", "o"]).strategy == "zero3"
    with pytest.raises(SftevalError, match="one of: "):
        config_from_args(["--config", "nope", "--model", "m", "--data", "d", "--output", "o"])
    for name in builtin_configs():
        assert load_config(name, model="m", data=["d.jsonl"], output="o").to_dict()


def test_help_describes_every_flag_with_its_default():
    text = build_parser().format_help()
    assert "rows per forward pass on each process (default: 4)" in " ".join(text.split())
    for flag in ("--chat-template", "--end-tokens", "--pad-token", "--strategy", "--deepspeed-config", "--overwrite", "--dry-run", "--lora-qlora"):
        assert flag in text
    actions = [a for a in build_parser()._actions if a.option_strings and a.dest != "help"]
    assert all(a.help for a in actions), [a.dest for a in actions if not a.help]


def test_direct_construction_is_type_checked_too():
    with pytest.raises(SftevalError, match="packing"):
        TrainConfig(model="m", data=("d",), output="o", packing="false").validate()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "message"),
    [("./no/such/model", "no model folder here"), ("/tmp/definitely/not/here", "no model folder here")],
)
def test_a_wrong_model_path_is_one_clear_line(model, message, tmp_path, sft_data):
    cmd = [sys.executable, "-m", "sfteval.train", "--model", model, "--data", str(sft_data["train"]), "--output", str(tmp_path / "o"), "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2
    err = [line for line in done.stderr.splitlines() if line.startswith(("error", "  hint"))]
    assert "Traceback" not in done.stderr and err and message in err[0] and model in err[0]
    assert not (tmp_path / "o").exists()


def test_qlora_is_refused_on_a_cpu_before_the_weights_load(tiny_model, sft_data, tmp_path):
    import torch

    from sfteval.train.config import LoraSettings
    from sfteval.train.sft import train

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: QLoRA would run (tests/train/test_train_gpu.py covers it)")
    cfg = TrainConfig(model=str(tiny_model), data=(str(sft_data["train"]),), output=str(tmp_path / "o"), max_steps=1,
                      progress=False, lora=LoraSettings(enabled=True, qlora=True))
    with pytest.raises(SftevalError, match="QLoRA needs a CUDA GPU"):
        train(cfg)
    assert not (tmp_path / "o").exists()
