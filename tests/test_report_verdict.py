"""The comparison report leads with a verdict card; graded benchmarks get flips (largest
per-item score changes); prompts are folded; plot legends sit clear of every point."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest

from sfteval.compare import CompareSettings, compare_runs, load_run, write_comparison
from sfteval.report import build_report, render_html, render_markdown
from tests.runfolders import FakeBench, write_run, write_sweep


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from sfteval import cli

    monkeypatch.setattr(sys, "argv", ["sfteval", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return int(e.value.code or 0)


@pytest.fixture()
def comparison(tmp_path: Path) -> dict:
    rng = np.random.default_rng(2)
    n = 60
    mm_b = (rng.random(n) < 0.6).astype(float)
    mm_t = np.where(rng.random(n) < 0.3, 0.0, mm_b)
    rouge_b = rng.random(n) * 0.4
    rouge_t = np.clip(rouge_b + 0.3 + rng.normal(0, 0.1, n), 0, 1)
    rouge_t[7] = 0.0  # one item got much worse
    long_prompt = "Q: " + "five-shot example. " * 300 + "Now answer:"

    def benches(mm: np.ndarray, rouge: np.ndarray) -> list[FakeBench]:
        return [FakeBench("mmlu", {"accuracy": mm}, general=True),
                FakeBench("heldout", {"rougeL": rouge, "bleu": rouge * 100}, kind="reference",
                          prompts=[long_prompt] * n, references=[f"ref {i}" for i in range(n)])]

    base = write_run(tmp_path, "base", benches(mm_b, rouge_b))
    tuned = write_run(tmp_path, "tuned", benches(mm_t, rouge_t))
    est = {"value": 0.4, "stderr": 0.02, "ci95": [0.36, 0.44], "n": 100, "method": "t"}
    sweep = write_sweep(tmp_path, "s", [{"step": s, "metrics": {"heldout": {"rougeL": est | {"value": v}}}}
                                        for s, v in ((10, 0.3), (20, 0.5), (30, 0.45))],
                        [{"step": s, "train_loss": 2 - s / 40} for s in (10, 20, 30)], select="heldout/rougeL")
    c = compare_runs(load_run(base), load_run(tuned), CompareSettings(resamples=300, sweep=str(sweep)))
    write_comparison(c, tmp_path / "cmp")
    return c


def test_verdict_card_comes_first(comparison: dict) -> None:
    title, sections = build_report(comparison, gate="FAIL")
    assert sections[0].title == "Verdict"
    md = render_markdown(title, sections)
    card = md[md.index("## Verdict"):md.index("## Summary")]
    assert "target: heldout/rougeL" in card and "->" in card and "[+" in card  # change with its CI
    assert "forgetting: forgot" in card and "mmlu -0." in card
    assert "| gate | FAIL |" in card
    assert "| checkpoint to keep | step 20" in card
    assert "['" not in md  # no Python lists anywhere


def test_graded_benchmarks_get_flips_with_folded_prompts(comparison: dict) -> None:
    flips = comparison["benchmarks"]["heldout"]["top_flips"]
    assert flips and flips[0]["direction"] == "lost" and flips[0]["id"].endswith("7")
    assert flips[0]["score_change"] < -0.2 and {f["direction"] for f in flips} == {"lost", "gained"}
    title, sections = build_report(comparison)
    md, page = render_markdown(title, sections), render_html(title, sections)
    assert "heldout #" in md and "rougeL" in md.split("## Top flips")[1]
    assert "<details><summary><b>prompt (end)</b></summary><pre>" in page
    assert "<details><summary>prompt (end)</summary>" in md


def test_report_cli_reads_the_gate_result(comparison: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "g.toml"
    rules.write_text('[max_drop]\n"*" = 0.02\n')
    _cli(monkeypatch, "gate", str(tmp_path / "cmp"), "--rules", str(rules), "--out", str(tmp_path / "gate"))
    assert _cli(monkeypatch, "report", str(tmp_path / "cmp"), "--gate", str(tmp_path / "gate")) == 0
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert md.index("## Verdict") < md.index("## Summary") and "| gate | FAIL (exit 1; " in md
    assert _cli(monkeypatch, "report", str(tmp_path / "cmp"), "--gate", str(tmp_path)) == 2


def _overlaps(a, b) -> bool:  # type: ignore[no-untyped-def]
    return not (a.x1 <= b.x0 or b.x1 <= a.x0 or a.y1 <= b.y0 or b.y1 <= a.y0)


def test_forest_legend_covers_no_point() -> None:
    pytest.importorskip("matplotlib")
    from sfteval.report_plots import forest_figure

    rows = [("mmlu/accuracy", -0.02, -0.08, 0.04), ("gsm8k/exact_match_strict", 0.10, 0.02, 0.18),
            ("heldout/rougeL", 0.31, 0.28, 0.34), ("ifeval/prompt_strict", 0.33, 0.27, 0.39)]  # lowest row, rightmost: under an inside legend
    fig = forest_figure(rows, 0.05)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")  # rendered as the report does
    assert buf.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent(renderer)
    marks = [line.get_window_extent(renderer) for line in ax.lines if len(line.get_xdata()) and line.get_marker() == "o"]
    bars = [c.get_window_extent(renderer) for c in ax.collections if c.get_label() != f"margin ±{0.05:g}"]
    assert len(marks) == len(rows)
    for box in marks + bars:
        assert not _overlaps(legend, box), (legend, box)
