"""`sfteval run` processes killed with SIGKILL at random moments, and two of them racing
for one run folder (#15). Slow: each case starts real CLI processes on the tiny model.

After a kill, every file a reader reads must be whole (results.json absent or complete,
samples lines valid JSON with at most a torn last line, no id twice), and the next
`sfteval run` must either finish to the same samples and metrics as an uninterrupted
run, or refuse with a clear error. Two concurrent runs of one command must never both
write: one is refused naming the other's pid, or it finds the run finished.

The runs use a chunk of 4 requests (set in the child, `CHUNK`) so that a tiny run has
several resume points; the default (64) would make every run one chunk.
"""

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

pytestmark = pytest.mark.slow

CHUNK = 4
CHILD = (
    "import sys\n"
    "import sfteval.backends.hf as hf\n"
    f"hf.HFBackend.chunk_size = {CHUNK}\n"
    "from sfteval.cli import main\n"
    "sys.argv = ['sfteval', *sys.argv[1:]]\n"
    "main()\n"
)
SEEDS = (11, 23, 47)


def _start(model: Path, out: Path) -> subprocess.Popen:
    args = ["run", str(model), "-b", "offline_gsm8k", "-b", "offline_mmlu", "--limit", "12", "--backend", "hf",
            "--batch-size", "4", "--out", str(out)]
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def _finish(proc: subprocess.Popen) -> tuple[int, str]:
    _, err = proc.communicate(timeout=300)
    return proc.returncode, err


def _run_dir(out: Path) -> Path | None:
    dirs = list((out / "runs").glob("*")) if (out / "runs").is_dir() else []
    return dirs[0] if dirs else None


def _samples(run_dir: Path) -> dict[str, list[str]]:
    return {p.stem: sorted(json.dumps(json.loads(line), sort_keys=True) for line in p.read_text().splitlines() if line)
            for p in sorted((run_dir / "samples").glob("*.jsonl"))}


def _metrics(run_dir: Path) -> dict:
    doc = json.loads((run_dir / "results.json").read_text())
    return {b: e["metrics"] for b, e in doc["benchmarks"].items()}


@pytest.fixture(scope="module")
def reference(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """An uninterrupted run, and how long it held the run folder (its writing phase)."""
    out = tmp_path_factory.mktemp("ref")
    proc = _start(tiny_model, out)
    seen = None
    while proc.poll() is None:
        run = _run_dir(out)
        if seen is None and run is not None and (run / ".lock").exists():
            seen = time.monotonic()
        time.sleep(0.01)
    rc, err = _finish(proc)
    assert rc == 0, err
    assert seen is not None
    return _run_dir(out), time.monotonic() - seen


def _check_whole(run_dir: Path | None) -> None:
    """What a kill may leave: no half-written file under a name any reader reads."""
    if run_dir is None or not run_dir.exists():
        return
    results = run_dir / "results.json"
    if results.exists():
        json.loads(results.read_text())  # complete, or not there at all
    for name in ("progress.json",):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    for p in (run_dir / "samples").glob("*.jsonl"):
        data = p.read_bytes()
        lines = data.split(b"\n")
        whole = lines[:-1] if not data.endswith(b"\n") else lines
        ids = [json.loads(line)["id"] for line in whole if line.strip()]
        assert len(ids) == len(set(ids)), f"{p}: an id twice"


@pytest.mark.parametrize("seed", SEEDS)
def test_kill_9_at_a_random_moment_then_resume(tiny_model: Path, reference: tuple[Path, float], tmp_path: Path,
                                               seed: int) -> None:
    ref_dir, write_s = reference
    rng = random.Random(seed)
    out = tmp_path / "out"
    proc = _start(tiny_model, out)
    # Kill somewhere in the writing phase (from taking the lock to a bit past the end),
    # where the files are: start-up before it writes nothing.
    deadline = time.monotonic() + 240
    while proc.poll() is None and not ((run := _run_dir(out)) is not None and (run / ".lock").exists()):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    time.sleep(rng.uniform(0.0, write_s * 1.1))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    _check_whole(_run_dir(out))

    rc, err = _finish(_start(tiny_model, out))
    if rc != 0:  # allowed: a clear refusal, never a traceback
        assert rc == 2 and err.startswith("error: ") and "Traceback" not in err, err
        pytest.fail(f"resume refused (allowed, but not expected with a dead writer): {err}")
    run = _run_dir(out)
    assert run is not None and run.name == ref_dir.name
    assert _samples(run) == _samples(ref_dir)
    assert _metrics(run) == _metrics(ref_dir)
    leftovers = sorted(p.name for p in run.rglob("*") if p.is_file() and p.parent.name != "samples")
    assert leftovers == ["results.json"], leftovers  # no lock, progress record or temp file left
    assert not list((run / "samples").glob(".*"))


def test_two_concurrent_runs_on_one_folder_never_both_write(tiny_model: Path, reference: tuple[Path, float],
                                                           tmp_path: Path) -> None:
    """Before the lock: 24 lines for 12 items in each samples file, CI over the duplicates."""
    ref_dir, _ = reference
    out = tmp_path / "out"
    procs = [_start(tiny_model, out) for _ in range(2)]
    results = [_finish(p) for p in procs]
    assert any(rc == 0 for rc, _ in results), results
    for (rc, err), other in zip(results, reversed(procs)):
        if rc != 0:
            assert rc == 2 and f"pid {other.pid}" in err and "being written by another process" in err, err
    run = _run_dir(out)
    assert _samples(run) == _samples(ref_dir)  # every id once, the same samples as one run alone
    assert _metrics(run) == _metrics(ref_dir)
