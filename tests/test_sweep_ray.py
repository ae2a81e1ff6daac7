"""Sweeps on a real local Ray cluster (`ray start --head` on 127.0.0.1 with 2 CPUs, started
and stopped here): run folders and sweep.json equal to the sequential sweep apart from
timings; a driver killed mid-sweep, re-run, finishes only the missing checkpoints."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sfteval.config import EngineSettings, RunConfig
from sfteval.fileio import read_json
from sfteval.sweep import run_sweep

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
RAY = [str(Path(sys.executable).with_name("ray"))]
ARGS = ["-b", "offline_mmlu", "--backend", "hf", "--limit", "4", "--batch-size", "1"]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Any:
    port = _free_port()
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    tmp = tmp_path_factory.mktemp("ray")
    start = subprocess.run(
        [*RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2", "--num-gpus=0",
         "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={tmp}"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert start.returncode == 0, start.stdout + start.stderr
    yield f"127.0.0.1:{port}", env
    subprocess.run([*RAY, "stop", "--force"], env=env, capture_output=True, timeout=120)


@pytest.fixture(scope="module")
def trainer_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sfteval.tinymodel import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("sft-out")
    for step, seed in [(10, 1), (20, 2), (30, 3)]:
        build_tiny_model(root / f"checkpoint-{step}", TinySpec(seed=seed))
    return root


def _timeless(doc: dict[str, Any]) -> dict[str, Any]:
    doc = {k: v for k, v in doc.items() if k not in ("created", "finished", "sessions", "environment")}
    doc["benchmarks"] = {b: {k: v for k, v in r.items() if k != "timing"} for b, r in doc["benchmarks"].items()}
    return doc


def _folders(out: Path) -> dict[str, Any]:
    return {
        d.name: (_timeless(read_json(d / "results.json")), {p.name: p.read_text() for p in sorted((d / "samples").glob("*"))})
        for d in sorted((out / "runs").iterdir())
    }


def _sweep_json(out: Path) -> dict[str, Any]:
    (doc,) = [read_json(p) for p in (out / "sweeps").glob("*/sweep.json")]
    return doc


def test_ray_sweep_equals_the_sequential_sweep(cluster: Any, trainer_out: Path, tmp_path: Path) -> None:
    address, env = cluster
    cfg = RunConfig(benchmarks=("offline_mmlu",), backend="hf", limit=4, out=str(tmp_path / "seq"), engine=EngineSettings(batch_size=1))
    run_sweep(trainer_out, cfg)
    ray_out = tmp_path / "ray"
    res = subprocess.run([sys.executable, "-m", "sfteval.cli", "run", str(trainer_out), *ARGS, "--out", str(ray_out),
                          "--ray-address", address], env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    seq, par = _folders(tmp_path / "seq"), _folders(ray_out)
    assert set(seq) == set(par) and len(seq) == 3
    for run_id in seq:
        a, b = seq[run_id], par[run_id]
        a[0]["config"].pop("out"), b[0]["config"].pop("out")
        assert a == b, run_id
    s, p = _sweep_json(tmp_path / "seq"), _sweep_json(ray_out)
    for doc, out in ((s, tmp_path / "seq"), (p, ray_out)):
        for c in doc["checkpoints"]:
            assert c.pop("run_dir") == str(out / "runs" / c["run_id"])
    assert s == p


def test_killed_driver_rerun_finishes_only_the_missing(cluster: Any, trainer_out: Path, tmp_path: Path) -> None:
    address, env = cluster
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "sfteval.cli", "run", str(trainer_out), *ARGS, "--out", str(out), "--ray-address", address]
    driver = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.monotonic() + 600
    try:
        while not list((out / "runs").glob("*/results.json")):  # the first checkpoint is written
            assert driver.poll() is None and time.monotonic() < deadline, "driver ended before any checkpoint finished"
            time.sleep(0.2)
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # no chance to clean up
        driver.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/results.json")}
    assert 1 <= len(finished) < 3 or pytest.skip("all three finished before the kill (machine too fast)")
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*/results.json")}
    assert len(after) == 3
    assert all(after[k] == v for k, v in finished.items())  # finished checkpoints were not redone
    assert [c["step"] for c in _sweep_json(out)["checkpoints"]] == [10, 20, 30]
    assert len({c["run_id"] for c in _sweep_json(out)["checkpoints"]}) == 3
