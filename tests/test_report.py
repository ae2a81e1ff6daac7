"""Reports: Markdown + self-contained HTML, for a comparison and for a single run."""

from __future__ import annotations

import base64
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from runfolders import FakeBench, write_run, write_sweep
from sfteval.compare import CompareSettings, compare_runs, load_run, write_comparison
from sfteval.report import Pre, Section, Table, build_report, render_html, render_markdown, write_report


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from sfteval.cli import main

    monkeypatch.setattr(sys, "argv", ["sfteval", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


@pytest.fixture
def comparison_dir(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    n = 120
    q = rng.beta(0.6, 0.4, n)
    b, t = (rng.random(n) < q).astype(float), (rng.random(n) < q * 0.7).astype(float)
    subjects = [{"subject": f"subj_{i % 4}"} for i in range(n)]
    outputs_t = [f"<script>alert({i})</script> answer" for i in range(n)]  # must be escaped in HTML

    def benches(scores: np.ndarray, outputs: list[str] | None) -> list[FakeBench]:
        return [FakeBench("mmlu", {"accuracy": scores}, general=True, meta=subjects, breakdown_by="subject",
                          outputs=outputs)]

    base = write_run(tmp_path, "base", benches(b, None))
    tuned = write_run(tmp_path, "tuned", benches(t, outputs_t))
    est = {"value": 0.4, "stderr": 0.02, "ci95": [0.36, 0.44], "n": 100, "method": "t"}
    sweep = write_sweep(tmp_path, "s", [{"step": s, "metrics": {"mmlu": {"accuracy": est | {"value": v}}}}
                                        for s, v in ((1, 0.3), (2, 0.4), (3, 0.35))],
                        [{"step": s, "train_loss": 2 - s / 4, "eval_loss": 1 + abs(s - 2) / 5} for s in (1, 2, 3)],
                        select="mmlu/accuracy")
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=300, sweep=str(sweep)))
    return write_comparison(c, tmp_path / "cmp").parent


def test_comparison_report_sections_plots_and_escaping(comparison_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    assert run_cli(["report", str(comparison_dir)], monkeypatch) == 0
    md = (comparison_dir / "report.md").read_text()
    page = (comparison_dir / "report.html").read_text()
    for heading in ("Scores: tuned vs base", "Catastrophic forgetting", "Per-group scores", "Overfitting",
                    "Behaviour drift", "Contamination", "Top flips"):
        assert f"## {heading}" in md and heading in page
    assert "mmlu | accuracy | forgot" in md
    for name in ("forest", "groups_mmlu_subject", "sweep"):
        assert f"report_files/{name}.png" in md
        assert (comparison_dir / "report_files" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"
    # self-contained: every image is inlined as a PNG; no external references
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) == 3 and all(base64.b64decode(x)[:4] == b"\x89PNG" for x in images)
    assert "src='http" not in page and "<link" not in page
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_run_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = write_run(tmp_path, "solo", [FakeBench("gsm8k", {"exact_match_strict": [1, 0, 1, 1],
                                                            "exact_match_flexible": [1, 1, 1, 1]},
                                                 kind="math", finish_reasons=["stop", "length", "stop", "stop"],
                                                 answers=["1", None, "3", "4"])])
    assert run_cli(["report", str(run), "--out", str(tmp_path / "r")], monkeypatch) == 0
    md = (tmp_path / "r" / "report.md").read_text()
    assert "| gsm8k | exact_match_strict * | 0.750 |" in md
    assert "## Output health" in md
    assert "| gsm8k | 0.250 |" in md  # extraction failure rate: one answer in four is null


def test_render_roundtrip_of_blocks() -> None:
    sections = [Section("S", ("para | with pipe and `a<b`", Table(("a", "b"), (("1", "x|y"),)),
                              Pre("code", "has ``` fence")))]
    md = render_markdown("T", sections)
    assert "| 1 | x\\|y |" in md and "````\nhas ``` fence\n````" in md
    page = render_html("T", sections)
    assert "<td>x|y</td>" in page and "<pre>has ``` fence</pre>" in page
    assert "<code>a&lt;b</code>" in page


def test_report_without_matplotlib_says_what_it_left_out(comparison_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    from sfteval.runfolder import read_comparison

    title, sections = build_report(read_comparison(comparison_dir).to_dict())
    md_path, _ = write_report(title, sections, tmp_path / "noplots")
    md = md_path.read_text()
    assert "## Plots left out" in md and "Deltas of the primary metrics" in md
    assert not (tmp_path / "noplots" / "report_files").exists()


def test_sweep_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    est = {"value": 0.4, "stderr": 0.01, "ci95": [0.38, 0.42], "n": 100, "method": "t"}
    cks = [{"step": s, "metrics": {"heldout": {"rougeL": est | {"value": v, "ci95": [v - 0.02, v + 0.02]}}}}
           for s, v in ((10, 0.3), (20, 0.45), (30, 0.38))]
    log = [{"step": s, "train_loss": 2 - s / 20, "eval_loss": 1 + abs(s - 20) / 10} for s in (10, 20, 30)]
    path = write_sweep(tmp_path, "run1", cks, log, select="heldout/rougeL")
    assert run_cli(["report", str(path.parent)], monkeypatch) == 0
    md = (path.parent / "report.md").read_text()
    assert "Keep step 20" in md and "EVAL LOSS RISING WHILE TRAIN LOSS FALLS" in md
    assert "peaked before the end" in md
