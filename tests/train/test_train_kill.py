"""#15: a training job killed with SIGKILL at random moments, then `--resume`: identical results or a clear refusal,
and never a half-written file (every JSON parses, every checkpoint folder loads)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
STEPS = 6


def command(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sfteval.train", "--model", str(model), "--data", str(data), "--output", str(out),
            "--max-steps", str(STEPS), "--save-steps", "1", "--keep-last", "2", "--micro-batch-size", "2", "--lr", "3e-3",
            "--no-progress", "--cache-dir", "none", *extra]


def check_nothing_half_written(out: Path) -> None:
    from safetensors.torch import load_file

    if not out.exists():
        return
    for p in out.rglob("*.json"):
        if ".tmp-" not in str(p) and ".trash-" not in str(p):
            json.loads(p.read_text())  # whole, or absent
    for ck in out.glob("checkpoint-*"):
        assert (ck / "sfteval.json").is_file(), f"{ck} exists without its metadata"
        assert load_file(str(ck / "model.safetensors"))
    log = out / "train_log.jsonl"
    if log.is_file():
        lines = log.read_text().splitlines()
        for line in lines[:-1]:
            json.loads(line)  # only the very last line may be torn (the resume drops it)


@pytest.fixture(scope="module")
def reference(tiny_model, tmp_path_factory):
    from sftdata import alpaca_rows, write_jsonl

    root = tmp_path_factory.mktemp("kill")
    data = write_jsonl(root / "train.jsonl", alpaca_rows(24))
    t0 = time.perf_counter()
    done = subprocess.run(command(tiny_model, data, root / "ref"), capture_output=True, text=True, timeout=600, cwd=REPO)
    assert done.returncode == 0, done.stderr
    return data, root / "ref", time.perf_counter() - t0


@pytest.mark.slow
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kill_9_at_a_random_moment_then_resume(tiny_model, reference, tmp_path, seed):
    from safetensors.torch import load_file

    data, ref, seconds = reference
    out = tmp_path / "out"
    delay = random.Random(seed).uniform(0.3, 1.0) * seconds
    proc = subprocess.Popen(command(tiny_model, data, out), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    check_nothing_half_written(out)
    again = subprocess.run(command(tiny_model, data, out, "--resume"), capture_output=True, text=True, timeout=600, cwd=REPO)
    if again.returncode != 0:  # allowed only as a clear refusal
        assert again.returncode == 2 and again.stderr.startswith("error: ") and "Traceback" not in again.stderr, again.stderr
        return
    check_nothing_half_written(out)
    final = f"checkpoint-{STEPS}"
    want, got = load_file(str(ref / final / "model.safetensors")), load_file(str(out / final / "model.safetensors"))
    assert want.keys() == got.keys()
    for k in want:
        assert (want[k] == got[k]).all(), f"{k} differs after kill at {delay:.1f}s + resume"
    rows = [json.loads(x) for x in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1)) and len({r["run_id"] for r in rows}) == 1
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".trash-*"))
