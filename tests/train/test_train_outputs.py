"""#15, trainer side: an output folder belongs to one run (refuse, move aside, rotate only our own, per-run log)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.train.config import LoraSettings, TrainConfig
from sfteval.train.sft import train

REPO = Path(__file__).resolve().parents[2]


def cfg(model: Path, data: dict[str, Path], out: Path, **kw) -> TrainConfig:
    base = dict(model=str(model), data=(str(data["train"]),), output=str(out), micro_batch_size=2, grad_accum=1,
                max_steps=8, save_steps=4, keep_last=1, lr=3e-3, progress=False)
    base.update(kw)
    return TrainConfig(**base)


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_run_into_a_used_folder_is_refused_and_nothing_changes(tiny_model, sft_data, tmp_path):
    out = tmp_path / "out"
    train(cfg(tiny_model, sft_data, out))
    before = snapshot(out)
    with pytest.raises(SftevalError, match="not empty") as err:
        train(cfg(tiny_model, sft_data, out, max_steps=4, seed=1))
    assert "--resume" in str(err.value) and "--overwrite" in str(err.value)
    assert snapshot(out) == before  # every earlier file byte for byte


def test_overwrite_moves_the_old_run_aside_and_the_new_final_checkpoint_survives(tiny_model, sft_data, tmp_path):
    """The issue's case: 8 steps saving every 4, then a 4-step run (LoRA, merged) into the same folder, keep_last 1.
    Before: rotation ranked both runs' checkpoints by step, deleted the new run's checkpoint-4 and crashed merging."""
    out = tmp_path / "out"
    train(cfg(tiny_model, sft_data, out))
    before = snapshot(out)
    lora = LoraSettings(enabled=True, r=4, alpha=8, dropout=0.0, save_merged=True)
    res = train(cfg(tiny_model, sft_data, out, max_steps=4, lora=lora, overwrite=True))
    assert Path(res.final_checkpoint).is_dir() and Path(res.final_checkpoint).name == "checkpoint-4"
    assert res.merged_dir and (Path(res.merged_dir) / "config.json").is_file()
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]
    assert len(moved) == 1 and snapshot(moved[0]) == before  # moved, not deleted, not touched
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint-4", "merged", "run.json", "train_log.jsonl"]
    # and a third run with --overwrite keeps both earlier ones
    train(cfg(tiny_model, sft_data, out, max_steps=4, overwrite=True))
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("out.old-")]) == 2


def test_every_log_line_and_checkpoint_carries_the_run_id(tiny_model, sft_data, tmp_path):
    out = tmp_path / "out"
    res = train(cfg(tiny_model, sft_data, out, max_steps=4, save_steps=2, keep_last=5))
    run = json.loads((out / "run.json").read_text())
    assert run["run_id"] == res.run_id and run["checkpoints"] == ["checkpoint-2", "checkpoint-4"]
    assert run["base_model"] == str(tiny_model.resolve()) and run["chat_template_sha256"]
    lines = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert lines and {r["run_id"] for r in lines} == {res.run_id}
    for name in run["checkpoints"]:
        assert json.loads((out / name / "sfteval.json").read_text())["run_id"] == res.run_id
    # a resumed run continues the same run (same id, log continued, not restarted)
    res2 = train(cfg(tiny_model, sft_data, out, max_steps=6, save_steps=2, keep_last=5, resume=True))
    assert res2.run_id == res.run_id
    assert [json.loads(x)["step"] for x in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4, 5, 6]


def test_rotation_never_touches_another_runs_checkpoint_or_the_newest(tmp_path):
    from sfteval.train.outputs import rotate

    out = tmp_path / "out"
    for step, rid in ((2, "other"), (4, "me"), (6, "me"), (9, "other"), (3, "me")):
        d = out / f"checkpoint-{step}"
        d.mkdir(parents=True)
        (d / "sfteval.json").write_text(json.dumps({"run_id": rid, "step": step}))
    (out / "run.json").write_text(json.dumps({"run_id": "me", "checkpoints": ["checkpoint-4", "checkpoint-6", "checkpoint-3"]}))
    gone = rotate(out, keep_last=1, run_id="me", newest="checkpoint-3")
    assert sorted(p.name for p in gone) == ["checkpoint-4", "checkpoint-6"]
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["checkpoint-2", "checkpoint-3", "checkpoint-9"]
    assert json.loads((out / "run.json").read_text())["checkpoints"] == ["checkpoint-3"]


def test_resume_refuses_a_different_base_model_or_chat_template(tiny_model, sft_data, tmp_path):
    out = tmp_path / "out"
    train(cfg(tiny_model, sft_data, out, max_steps=2, save_steps=None))
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model, other)
    with pytest.raises(SftevalError, match="different base model"):
        train(cfg(other, sft_data, out, max_steps=4, save_steps=None, resume=True))
    with pytest.raises(SftevalError, match="different chat template"):
        train(cfg(tiny_model, sft_data, out, max_steps=4, save_steps=None, resume=True, chat_template="chatml"))
    stranger = tmp_path / "stranger"
    (stranger / "checkpoint-1").mkdir(parents=True)
    with pytest.raises(SftevalError, match="run.json"):
        train(cfg(tiny_model, sft_data, stranger, resume=True))


@pytest.mark.slow
def test_command_line_refusal_is_one_error_and_exit_2(tiny_model, sft_data, tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-4").mkdir(parents=True)
    (out / "checkpoint-4" / "model.safetensors").write_bytes(b"old weights")
    cmd = [sys.executable, "-m", "sfteval.train", "--model", str(tiny_model), "--data", str(sft_data["train"]),
           "--output", str(out), "--max-steps", "1", "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 2 and "the output folder is not empty (checkpoint-4)" in done.stderr and "Traceback" not in done.stderr
    assert (out / "checkpoint-4" / "model.safetensors").read_bytes() == b"old weights"


def test_resume_after_a_kill_before_the_first_checkpoint_redoes_the_log(tiny_model, sft_data, tmp_path):
    """Found by the kill -9 test: the killed run's log lines stayed and the redone steps were appended."""
    out = tmp_path / "out"
    train(cfg(tiny_model, sft_data, out, max_steps=2, save_steps=None))
    shutil.rmtree(out / "checkpoint-2")  # as if killed after logging, before the only save
    res = train(cfg(tiny_model, sft_data, out, max_steps=2, save_steps=None, resume=True))
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and {r["run_id"] for r in rows} == {res.run_id}
