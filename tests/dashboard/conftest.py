"""Fixture reports folder for the dashboard tests: two runs, a comparison, a sweep.

Runs come from tests/runfolders.py (the shared synthetic writer). The comparison.json is
written by hand from docs/compare-format.md so the page is tested against the contract,
not against whatever compare.py currently emits.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dash_helpers import benches_for, comparison_for, write_run, write_sweep


@pytest.fixture(scope="session")
def reports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reports")
    base = write_run(out, "llama-base", benches_for(False), model_path="/ckpt/llama-base")
    tuned = write_run(out, "llama-sft", benches_for(True), model_path="/ckpt/llama-sft")
    cdir = out / "compare" / f"{base.name}__{tuned.name}"
    cdir.mkdir(parents=True)
    (cdir / "comparison.json").write_text(json.dumps(comparison_for(base, tuned)))
    cks = [{"step": s, "metrics": {"heldout": {"rougeL": {"value": v, "stderr": 0.02, "ci95": [v - 0.04, v + 0.04],
                                                           "n": 50, "method": "t"}}}}
           for s, v in ((100, 0.30), (200, 0.36), (300, 0.33))]
    log = [{"step": s, "epoch": s / 300, "train_loss": 2.0 - s / 200, "eval_loss": 1.8 - s / 400 + (s / 300) ** 3,
            "lr": 1e-4, "grad_norm": 1.0, "tokens_per_s": 1000.0} for s in (50, 100, 150, 200, 250, 300)]
    write_sweep(out, "demo", cks, log, select="heldout/rougeL")
    return out


@pytest.fixture()
def app_env(reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    """Point the app at the fixture reports and a fresh ratings database."""
    db = tmp_path / "ratings.sqlite3"
    monkeypatch.setenv("SFTEVAL_REPORTS", str(reports))
    monkeypatch.setenv("SFTEVAL_RATINGS_DB", str(db))
    return reports, db
