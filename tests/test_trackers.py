"""--log-to: a real MLflow tracking server (started on 127.0.0.1 by the test), W&B in
offline mode, TensorBoard event files, fed by the real `run`, `compare` and `gate` commands."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from runfolders import FakeBench, write_run, write_sweep

from sfteval.cli import main
from sfteval.errors import SftevalError
from sfteval.trackers import parse_log_to

N = 40


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["sfteval", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(0)
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": (rng.random(N) < 0.6).astype(float)},
                                                  general=True)], model_path="/m/base")
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": (rng.random(N) < 0.5).astype(float)},
                                                    general=True)], model_path="/m/tuned")
    return base, tuned


def test_unknown_tracker_is_refused_before_anything_runs() -> None:
    assert parse_log_to(["mlflow,wandb", "mlflow"]) == ["mlflow", "wandb"]
    with pytest.raises(SftevalError, match="unknown tracker 'neptune'"):
        parse_log_to(["neptune"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("mlflow", reason="mlflow is in the dev extra")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = (root / "server.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
         "--default-artifact-root", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError("mlflow server did not start:\n" + (root / "server.log").read_text()[-3000:])
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


@pytest.mark.slow
def test_mlflow_server_receives_run_comparison_gate_and_sweep(mlflow_server: str, runs, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "sfteval-test")
    base, tuned = runs
    # A real `sfteval run` (a replay: no model) logs its results.
    replay = tmp_path / "replay.jsonl"
    replay.write_text("".join(json.dumps({"id": str(i), "output": f"#### {i}"}) + "\n" for i in range(8)))
    assert _cli(monkeypatch, "run", "--replay", str(replay), "--name", "replayed", "-b", "offline_gsm8k", "--limit",
                "8", "--out", str(tmp_path / "reports"), "--log-to", "mlflow") == 0
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--out", str(tmp_path / "cmp"), "--log-to", "mlflow") == 0
    rules = tmp_path / "gate.toml"
    rules.write_text('[max_drop]\n"mmlu/accuracy" = 0.5\n')
    code = _cli(monkeypatch, "gate", str(tmp_path / "cmp"), "--rules", str(rules), "--out", str(tmp_path / "gate"),
                "--log-to", "mlflow")
    sweep = write_sweep(tmp_path, "demo", [{"step": s, "metrics": {"heldout": {"rougeL": {
        "value": v, "stderr": 0.02, "ci95": [v - 0.04, v + 0.04], "n": 50, "method": "t"}}}}
        for s, v in ((100, 0.30), (200, 0.36), (300, 0.33))], [], select="heldout/rougeL")
    from sfteval.trackers.hooks import log_sweep

    log_sweep(["mlflow"], sweep)

    client = MlflowClient(mlflow_server)
    exp = client.get_experiment_by_name("sfteval-test")
    found = {r.data.tags["sfteval.kind"]: r for r in client.search_runs([exp.experiment_id])}
    assert set(found) == {"run", "comparison", "gate", "sweep"}
    run = found["run"]
    ref = json.loads(next((tmp_path / "reports" / "runs").glob("replayed-*/results.json")).read_text())
    est = ref["benchmarks"]["offline_gsm8k"]["metrics"]["exact_match_strict"]
    assert run.data.metrics["offline_gsm8k/exact_match_strict"] == pytest.approx(est["value"])
    assert run.data.metrics["offline_gsm8k/exact_match_strict/ci_hi"] == pytest.approx(est["ci95"][1])
    assert run.data.tags["sfteval.run_dir"].startswith("file://") and "replayed-" in run.data.tags["sfteval.run_dir"]
    comp = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    delta = comp["benchmarks"]["mmlu"]["metrics"]["accuracy"]["delta"]
    assert found["comparison"].data.metrics["mmlu/accuracy/delta"] == pytest.approx(delta["value"])
    assert found["comparison"].data.metrics["mmlu/accuracy/delta/ci_lo"] == pytest.approx(delta["ci95"][0])
    assert "forgetting.mmlu" in found["comparison"].data.tags
    assert found["gate"].data.metrics["gate/exit_code"] == code
    history = client.get_metric_history(found["sweep"].info.run_id, "heldout/rougeL")
    assert [(m.step, round(m.value, 6)) for m in sorted(history, key=lambda m: m.step)] == \
        [(100, 0.3), (200, 0.36), (300, 0.33)]
    arts = [a.path for a in client.list_artifacts(found["comparison"].info.run_id)]
    assert "comparison_table.tsv" in arts


@pytest.mark.slow
def test_wandb_offline_writes_a_syncable_run(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb", reason="wandb is in the dev extra")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    base, tuned = runs
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--out", str(tmp_path / "cmp"), "--log-to", "wandb") == 0
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (records,) = run_dir.glob("run-*.wandb")
    assert records.stat().st_size > 0
    deadline = time.monotonic() + 30  # wandb-core may still be flushing the record file when finish() returns
    while b"forgetting.mmlu" not in (raw := records.read_bytes()) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert b"mmlu/accuracy/delta" in raw and b"forgetting.mmlu" in raw  # the records hold what we sent
    assert (run_dir / "files" / "comparison_table.tsv").read_text().startswith("benchmark\tmetric")
    # wandb's own sync tool recognises the offline run (a dry run: nothing leaves the machine).
    out = subprocess.run([sys.executable, "-m", "wandb", "sync", "--dry-run", str(run_dir)], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert out.returncode == 0 and "Would sync 1 run" in out.stdout + out.stderr, out.stdout + out.stderr


def test_tensorboard_event_files(runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is in the dev extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("SFTEVAL_TENSORBOARD_DIR", str(tmp_path / "tb"))
    base, tuned = runs
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--out", str(tmp_path / "cmp"),
                "--log-to", "tensorboard") == 0
    (logdir,) = (tmp_path / "tb").iterdir()
    acc = EventAccumulator(str(logdir))
    acc.Reload()
    comp = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    delta = comp["benchmarks"]["mmlu"]["metrics"]["accuracy"]["delta"]["value"]
    assert acc.Scalars("mmlu/accuracy/delta")[0].value == pytest.approx(delta, abs=1e-6)


def test_the_trainer_takes_the_same_flag() -> None:
    from sfteval.train.config import config_from_args

    cfg = config_from_args(["--model", "m", "--data", "d.jsonl", "--output", "o", "--log-to", "tensorboard", "wandb"])
    assert cfg.trackers == ("tensorboard", "wandb")


@pytest.mark.slow
def test_the_trainer_logs_its_loss_to_tensorboard(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("tensorboard", reason="tensorboard is in the dev extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"Say {w}.", "output": w}) + "\n"
                            for w in ("alpha", "beta", "gamma", "delta")))
    res = subprocess.run([sys.executable, "-m", "sfteval.train", "--model", str(tiny_model), "--data", str(data),
                          "--output", str(tmp_path / "out"), "--max-steps", "2", "--log-to", "tensorboard"],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    logs = sorted({p.parent for p in (tmp_path / "out").rglob("events.out.tfevents.*")})
    tags = set()
    for d in logs:
        acc = EventAccumulator(str(d))
        acc.Reload()
        tags |= set(acc.Tags()["scalars"])
    assert any("loss" in t for t in tags), tags
