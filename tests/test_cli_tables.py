"""Command summaries off a terminal (a CI log, a pipe): plain tables, nothing truncated.

Snapshot tests of the run, sweep and compare summaries as a pipe sees them (pytest's
capture is not a TTY), at COLUMNS=80: no ellipsis, no line over 80 characters for the
demo-like names used here, primary metrics only unless --all-metrics, and --format md|json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from sfteval.commands.run import print_summary
from sfteval.sweep import print_table
from tests.runfolders import FakeBench, write_run, write_sweep

ELLIPSIS = "\u2026"


@pytest.fixture(autouse=True)
def _narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")


def _benches(shift: float = 0.0) -> list[FakeBench]:
    return [
        FakeBench("offline_gsm8k", {"exact_match_strict": [1, 0, 0, 1], "exact_match_flexible": [1, 1, 0, 1],
                                    "extracted": [1, 1, 1, 1]}, kind="math"),
        FakeBench("offline_mmlu", {"accuracy": [0, 0, 0, 0], "accuracy_norm": [0, 1, 0, 0]}, general=True),
        FakeBench("demo_heldout", {"exact_match": [1, 1, 0, 0, 1, 1, 0, 1, 1, 0, 0, 1]}, kind="reference"),
    ]


def _check_plain(text: str) -> None:
    assert ELLIPSIS not in text and "\x1b[" not in text
    assert max(len(line) for line in text.splitlines()) <= 80, text


def test_run_summary_is_a_plain_table_with_primary_metrics(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, "tuned", _benches())
    print_summary(run)
    out = capsys.readouterr().out
    head = out.split("\nresults:")[0]
    _check_plain(head)
    assert head == (
        f"tuned  (hf, run {run.name})\n"
        "benchmark      metric              value   ± se          95% CI   n\n"
        "-------------  ------------------  -----  -----  --------------  --\n"
        "offline_gsm8k  exact_match_strict  0.500  0.250  [0.150, 0.850]   4\n"
        "offline_mmlu   accuracy            0.000  0.000  [0.000, 0.490]   4\n"
        "demo_heldout   exact_match         0.583  0.142  [0.320, 0.807]  12"
    )
    assert "exact_match_flexible" not in out and "accuracy_norm" not in out  # primary only by default


def test_run_summary_all_metrics_md_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = write_run(tmp_path, "tuned", _benches())
    print_summary(run, all_metrics=True)
    out = capsys.readouterr().out
    _check_plain(out.split("\nresults:")[0])
    assert "exact_match_flexible" in out and "exact_match_strict *" in out and "* primary metric" in out
    print_summary(run, fmt="md")
    md = capsys.readouterr().out
    assert "| benchmark | metric | value | ± se | 95% CI | n |" in md and "|---|---|---:|---:|---:|---:|" in md
    print_summary(run, fmt="json")
    doc = json.loads(capsys.readouterr().out)
    rows = doc["tables"][0]["rows"]
    assert [r["benchmark"] for r in rows] == ["offline_gsm8k", "offline_mmlu", "demo_heldout"]
    assert rows[0]["value"] == 0.5 and rows[0]["n"] == 4 and rows[0]["primary"] is True


def _est(v: float) -> dict:
    return {"value": v, "stderr": 0.05, "ci95": [max(0.0, v - 0.1), min(1.0, v + 0.1)], "n": 40}


def test_sweep_summary_readable_at_80_columns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cks = [{"step": s, "metrics": {
        "demo_heldout": {"exact_match": _est(v), "exact_match_loose": _est(v)},
        "offline_gsm8k": {"exact_match_strict": _est(0.1), "exact_match_flexible": _est(0.2)},
        "offline_mmlu": {"accuracy": _est(0.25)}, "demo_format": {"exact_match": _est(v / 2)},
        "train": {"exact_match": _est(v + 0.1)}}} for s, v in [(10, 0.2), (20, 0.6), (30, 0.5)]]
    log = [{"step": s, "train_loss": 3 - s / 10, "eval_loss": 3.1 - s / 10} for s in (10, 20, 30)]
    path = write_sweep(tmp_path, "sw", cks, log, select="demo_heldout/exact_match")
    doc = json.loads(path.read_text())
    primaries = {"offline_gsm8k": "exact_match_strict", "offline_mmlu": "accuracy", "demo_format": "exact_match",
                 "train": "exact_match"}
    print_table(doc, primaries=primaries)
    out = capsys.readouterr().out
    _check_plain(out)
    lines = out.splitlines()
    assert lines[1].split() == ["step", "benchmark", "metric", "value", "95%", "CI", "kept"]
    kept = [line for line in lines if line.endswith("*")]
    assert len(kept) == 1 and kept[0].split()[:4] == ["20", "demo_heldout", "exact_match", "0.600"]
    assert "exact_match_flexible" not in out and "exact_match_loose" not in out
    assert "\n  20      1.0000     1.1000\n" in out  # losses by step, a table of their own
    print_table(doc, fmt="json", primaries=primaries)
    tables = json.loads(capsys.readouterr().out)["tables"]
    assert len(tables[0]["rows"]) == 3 * 5 and tables[1]["rows"][1] == {"step": 20, "train_loss": 1.0, "eval_loss": pytest.approx(1.1)}


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from sfteval import cli

    monkeypatch.setattr(sys, "argv", ["sfteval", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return int(e.value.code or 0)


def test_compare_summary_plain_md_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    base = write_run(tmp_path, "base", _benches())
    tuned_b = _benches()
    tuned_b[0] = FakeBench("offline_gsm8k", {"exact_match_strict": [1, 1, 0, 1], "exact_match_flexible": [1, 1, 1, 1],
                                             "extracted": [1, 1, 1, 1]}, kind="math")
    tuned = write_run(tmp_path, "tuned", tuned_b)
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--out", str(tmp_path / "c"), "--resamples", "200") == 0
    out = capsys.readouterr().out
    _check_plain(out.split("\nwrote")[0])
    lines = out.splitlines()
    assert lines[0] == "base -> tuned (paired, 95% CI)"
    assert lines[1].split() == ["benchmark", "base", "tuned", "delta", "95%", "CI", "forgetting"]
    row = next(line for line in lines if line.startswith("offline_gsm8k"))
    assert row.split()[:4] == ["offline_gsm8k", "0.500", "0.750", "+0.250"]
    mmlu = next(line for line in lines if line.startswith("offline_mmlu"))
    assert mmlu.endswith("not measured")
    assert "metrics: offline_gsm8k exact_match_strict; offline_mmlu accuracy; demo_heldout" in out
    assert "['" not in out  # no Python lists
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--out", str(tmp_path / "c"), "--resamples", "200",
                "--format", "json", "--all-metrics") == 0
    rows = json.loads(capsys.readouterr().out)["tables"][0]["rows"]
    assert {r["metric"] for r in rows} >= {"exact_match_strict", "exact_match_flexible", "accuracy_norm"}
    assert _cli(monkeypatch, "compare", str(base), str(tuned), "--format", "xml") == 2
