"""Checkpoint sweeps: discovery, step order, one engine at a time, sweep.json schema, best pick."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sfteval.config import EngineSettings, RunConfig
from sfteval.errors import SftevalError
from sfteval.fileio import read_json
from sfteval.sweep import best_of, find_checkpoints, parse_select, read_train_log, run_sweep, sweep_key, table_rows


def _ckpt(root: Path, name: str, files: dict[str, str]) -> Path:
    p = root / name
    p.mkdir(parents=True)
    for f, text in files.items():
        (p / f).write_text(text)
    return p


def test_find_checkpoints_skips_temp_and_incomplete(tmp_path: Path) -> None:
    full = {"config.json": "{}", "model.safetensors": "x"}
    _ckpt(tmp_path, "checkpoint-10", full)
    _ckpt(tmp_path, "checkpoint-2", full)
    _ckpt(tmp_path, "checkpoint-7", {"adapter_config.json": "{}", "adapter_model.safetensors": "x"})
    _ckpt(tmp_path, ".tmp-checkpoint-12", full)  # train/ writes here, then renames
    _ckpt(tmp_path, "checkpoint-11", {"config.json": "{}"})  # weights not written yet
    _ckpt(tmp_path, "checkpoint-x", full)
    _ckpt(tmp_path, "checkpoint-3-old", full)
    (tmp_path / "checkpoint-4").write_text("a file, not a folder")
    assert [s for s, _ in find_checkpoints(tmp_path)] == [2, 7, 10]
    assert find_checkpoints(tmp_path / "missing") == []


def test_train_log_keeps_the_shown_columns_and_tolerates_a_torn_tail(tmp_path: Path) -> None:
    rows = [
        {"step": 1, "epoch": 0.1, "train_loss": 2.0, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 10.0, "supervised_tokens": 5},
        {"step": 2, "epoch": 0.2, "train_loss": 1.5, "eval_loss": 1.7, "lr": 1e-4, "grad_norm": 0.9, "tokens_per_s": 11.0},
    ]
    (tmp_path / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 3, "tra')
    got = read_train_log(tmp_path)
    assert len(got) == 2 and "supervised_tokens" not in got[0] and got[1]["eval_loss"] == 1.7
    assert read_train_log(tmp_path / "nothing") == []


def _est(v: float) -> dict[str, Any]:
    return {"value": v, "stderr": 0.1, "ci95": [v - 0.2, v + 0.2], "n": 10, "method": "wilson"}


def test_select_and_best() -> None:
    metrics = {"gsm8k": {"em": _est(0.1), "em_flex": _est(0.2)}, "mmlu": {"accuracy": _est(0.3)}}
    primary = {"gsm8k": "em", "mmlu": "accuracy"}
    assert parse_select(None, metrics, primary) == ("gsm8k", "em", "max")
    assert parse_select("mmlu", metrics, primary) == ("mmlu", "accuracy", "max")
    assert parse_select("gsm8k/em_flex:min", metrics, primary) == ("gsm8k", "em_flex", "min")
    with pytest.raises(SftevalError, match="no metric 'bleu'"):
        parse_select("gsm8k/bleu", metrics, primary)
    with pytest.raises(SftevalError, match="no benchmark 'arc'"):
        parse_select("arc/acc", metrics, primary)
    with pytest.raises(SftevalError, match="selection mode"):
        parse_select("gsm8k/em:best", metrics, primary)
    entries = [{"step": s, "run_id": f"r{s}", "metrics": {"b": {"m": _est(v)}}} for s, v in [(1, 0.2), (2, 0.5), (3, 0.5), (4, 0.1)]]
    assert best_of(entries, "b", "m", "max") == {"step": 2, "run_id": "r2", "value": 0.5}  # tie: earliest
    assert best_of(entries, "b", "m", "min")["step"] == 4
    assert best_of(entries, "b", "x", "max") is None


def test_table_shows_losses_logged_at_or_before_each_checkpoint() -> None:
    doc = {
        "source": "s",
        "select": {"metric": "b/m", "mode": "max"},
        "best": {"step": 4, "run_id": "r4", "value": 0.5},
        "checkpoints": [{"step": s, "metrics": {"b": {"m": _est(v)}}} for s, v in [(2, 0.2), (4, 0.5)]],
        "train_log": [{"step": 1, "train_loss": 3.0}, {"step": 3, "train_loss": 2.0, "eval_loss": 2.5}, {"step": 5, "train_loss": 1.0}],
    }
    header, rows = table_rows(doc)
    assert header == ["step", "b/m", "train_loss", "eval_loss", "best"]
    assert rows[0][0] == "2" and rows[0][2] == "3.0000" and rows[0][3] == "" and rows[0][4] == ""
    assert rows[1][2] == "2.0000" and rows[1][3] == "2.5000" and rows[1][4] == "*"


@pytest.fixture(scope="module")
def trainer_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trainer-like output: three checkpoints of different (random) weights + a log."""
    from sfteval.tinymodel import TinySpec, build_tiny_model

    root = tmp_path_factory.mktemp("sft-out")
    for step, seed in [(30, 3), (10, 1), (20, 2)]:
        build_tiny_model(root / f"checkpoint-{step}", TinySpec(seed=seed))
    _ckpt(root, ".tmp-checkpoint-40", {"config.json": "{}"})
    rows = [{"step": s, "epoch": s / 30, "train_loss": 3 - s / 30, "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 100.0} for s in (10, 20, 30)]
    (root / "train_log.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_run_sweep_end_to_end(trainer_out: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from sfteval.backends import hf

    events: list[str] = []
    real_init, real_close = hf.HFBackend.__init__, hf.HFBackend.close

    def init(self: Any, model_path: str, engine: EngineSettings = EngineSettings()) -> None:
        events.append(f"open {Path(model_path).name}")
        real_init(self, model_path, engine)

    def close(self: Any) -> None:
        events.append(f"close {Path(self.path).name}")
        real_close(self)

    monkeypatch.setattr(hf.HFBackend, "__init__", init)
    monkeypatch.setattr(hf.HFBackend, "close", close)
    cfg = RunConfig(benchmarks=("offline_mmlu",), backend="hf", limit=6, out=str(tmp_path), engine=EngineSettings(batch_size=8))
    sweep_dir = run_sweep(trainer_out, cfg, "offline_mmlu/accuracy")
    assert events == [f"{a} checkpoint-{s}" for s in (10, 20, 30) for a in ("open", "close")]  # one engine at a time
    doc = read_json(sweep_dir / "sweep.json")
    assert sweep_dir == tmp_path / "sweeps" / sweep_key(trainer_out) and sweep_dir.name.startswith(trainer_out.name)
    assert set(doc) == {"schema", "source", "checkpoints", "train_log", "select", "best"}
    assert doc["schema"] == "sfteval.sweep/1" and doc["source"] == str(trainer_out.resolve())
    assert [c["step"] for c in doc["checkpoints"]] == [10, 20, 30]
    for c in doc["checkpoints"]:
        assert set(c) == {"step", "path", "run_id", "run_dir", "metrics"}
        results = read_json(Path(c["run_dir"]) / "results.json")
        assert results["run_id"] == c["run_id"] and results["model"]["path"].endswith(f"checkpoint-{c['step']}")
        est = c["metrics"]["offline_mmlu"]["accuracy"]
        assert set(est) >= {"value", "stderr", "ci95", "n"} and est["n"] == 6
    assert doc["select"] == {"metric": "offline_mmlu/accuracy", "mode": "max"}
    # best: chosen on the select half of the items, its value on the report half (#13: the
    # all-items choice reported on the items it was chosen on is biased upward)
    from sfteval.runfolder import read_samples
    from sfteval.selection import split_of

    half: dict[str, dict[int, list[float]]] = {"select": {}, "report": {}}
    for c in doc["checkpoints"]:
        for i, row in read_samples(Path(c["run_dir"]) / "samples" / "offline_mmlu.jsonl").items():
            half[split_of(i)].setdefault(c["step"], []).append(float(row.score("accuracy")))
    best = doc["best"]
    assert best["chosen_on"] == "select" and best["reported_on"] == "report"
    sel = {s: sum(v) / len(v) for s, v in half["select"].items()}
    assert best["step"] == min(s for s, v in sel.items() if v == max(sel.values()))  # ties: the earliest
    report = half["report"][best["step"]]
    assert best["value"] == pytest.approx(sum(report) / len(report)) and best["n"] == len(report)
    assert best["split"]["select_n"] + best["split"]["report_n"] == 6 and "sha256" in best["split"]["method"]
    assert best["ci95"][0] <= best["value"] <= best["ci95"][1]
    assert [r["step"] for r in doc["train_log"]] == [10, 20, 30]
    out = capsys.readouterr().out
    assert "offline_mmlu/accuracy" in out and "train_loss" in out
    # Re-running resumes every run folder: same run ids, nothing re-generated.
    again = read_json(run_sweep(trainer_out, cfg, "offline_mmlu/accuracy") / "sweep.json")
    assert [c["run_id"] for c in again["checkpoints"]] == [c["run_id"] for c in doc["checkpoints"]]
    assert events[6:] == []  # no engine opened: all samples were on disk


def test_run_sweep_refuses_an_empty_folder_and_a_bad_metric(trainer_out: Path, tmp_path: Path) -> None:
    with pytest.raises(SftevalError, match="no complete checkpoint"):
        run_sweep(tmp_path, RunConfig(benchmarks=("offline_mmlu",), out=str(tmp_path)))
    cfg = RunConfig(benchmarks=("offline_mmlu",), backend="hf", limit=2, out=str(tmp_path))
    with pytest.raises(SftevalError, match="no metric 'bleu'"):
        run_sweep(trainer_out, cfg, "offline_mmlu/bleu")


def test_two_trainer_folders_named_out_keep_separate_sweep_records(tiny_model: Path, tmp_path: Path) -> None:
    """Both used to write reports/sweeps/out/sweep.json, the second over the first (#15)."""
    import shutil

    from sfteval.runfolder import list_sweeps, read_sweep

    roots = [tmp_path / "a" / "out", tmp_path / "b" / "out"]
    shutil.copytree(tiny_model, roots[0] / "checkpoint-10")
    shutil.copytree(tiny_model, roots[1] / "checkpoint-20")
    cfg = RunConfig(benchmarks=("offline_mmlu",), backend="hf", limit=2, out=str(tmp_path / "reports"))
    dirs = [run_sweep(r, cfg) for r in roots]
    assert dirs[0] != dirs[1] and all(d.name.startswith("out-") for d in dirs)
    docs = [read_json(d / "sweep.json") for d in dirs]
    assert [d["source"] for d in docs] == [str(r.resolve()) for r in roots]
    assert [[c["step"] for c in d["checkpoints"]] for d in docs] == [[10], [20]]
    assert run_sweep(roots[0], cfg) == dirs[0]  # the same folder lands in the same record
    old = tmp_path / "reports" / "sweeps" / "out"  # a record written before sweeps were keyed
    old.mkdir()
    (old / "sweep.json").write_text(json.dumps({**docs[0], "source": "/elsewhere/out"}))
    found = list_sweeps(tmp_path / "reports")
    assert set(found) == {dirs[0] / "sweep.json", dirs[1] / "sweep.json", old / "sweep.json"}
    assert all(read_sweep(p).schema == "sfteval.sweep/1" for p in found)
