"""`sfteval run` as a user meets it: exit codes and one clear error line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def _sfteval(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sfteval.cli", *args], capture_output=True, text=True, cwd=cwd)


def test_usage_error_exits_2() -> None:
    r = _sfteval("run", "x", "--suite", "offline", "--bogus")
    assert r.returncode == 2 and "No such option: --bogus" in r.stderr


def test_missing_checkpoint_exits_2_with_one_line(tmp_path: Path) -> None:
    r = _sfteval("run", str(tmp_path / "ckpt"), "--suite", "offline", "--out", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: {tmp_path / 'ckpt'}: checkpoint folder not found"


def test_malformed_data_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "val.jsonl"
    bad.write_text('{"instruction": "a", "output": "b"}\n{"instruction": "a", "output": \n')
    outs = tmp_path / "outs.jsonl"
    outs.write_text('{"id": "0", "output": "b"}\n')
    r = _sfteval("run", "--replay", str(outs), "--name", "x", "-b", "heldout", "--data", f"heldout={bad}", "--out", str(tmp_path))
    assert r.returncode == 2 and f"{bad}:2" in r.stderr and "malformed JSON" in r.stderr


def test_replay_from_the_command_line(tmp_path: Path) -> None:
    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(json.dumps({"id": str(i), "output": "#### 1"}) + "\n" for i in range(3)))
    r = _sfteval("run", "--replay", str(outs), "--name", "ext", "-b", "offline_gsm8k", "--limit", "3", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "exact_match_strict" in r.stdout and "results:" in r.stdout
    assert list((tmp_path / "runs").glob("ext-*/results.json"))
