"""#20 on the dashboard: a headline card on Compare, numbers to their precision, Samples
reading the comparison's base vs tuned with one "show" control (all, regressions,
improvements, changed) and a sort by per-item delta, outputs shown where a kind extracts no answer, and Checkpoints overlaying
the target metric and the other benchmarks by step."""

from __future__ import annotations

import math
import re
import sys
from pathlib import Path

from dash_helpers import open_page, run_ids

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "sfteval" / "dashboard"))
from numfmt import fmt_ci, fmt_p

LONG_FLOAT = re.compile(r"\d\.\d{7,}")


def test_number_formats() -> None:
    assert fmt_p(1e-18) == "<1e-6" and fmt_p(0.0004) == "4.0e-4" and fmt_p(0.03) == "0.030"
    assert fmt_ci([0.12345678901234567, 0.2]) == "[0.123, 0.200]" and fmt_ci([None, 1]) == "-"
    assert fmt_ci([-0.02, 0.3], signed=True) == "[-0.020, +0.300]"


def test_compare_headline_card_and_precise_numbers(app_env) -> None:
    at = open_page("compare")
    card = next(m.value for m in at.markdown if "target: chat/rougeL" in m.value)
    assert "0.400 -> 0.600 (+0.200 [+0.180, +0.220])" in card and "forgetting: forgot" in card
    table = at.dataframe[0].value
    chat = table[table["benchmark"] == "chat"].iloc[0]
    assert chat["p"] == "1.0e-4" and chat["95% CI"] == "[+0.180, +0.220]"
    drift = at.dataframe[-1].value
    assert list(drift["p"]) == ["0.030"]


def test_samples_defaults_to_the_comparison_and_filters_regressions(app_env) -> None:
    reports, _ = app_env
    base, tuned = run_ids(reports)
    at = open_page("samples")
    assert at.selectbox(key="samples_base").value == base.name
    assert at.selectbox(key="samples_tuned").value == tuned.name
    at.selectbox(key="samples_bench").select("gsm8k").run()
    at.selectbox(key="samples_show").select("regressions only").run()
    table = at.dataframe[0].value
    assert len(table) > 0 and set(table["status"]) == {"regression"}
    at.selectbox(key="samples_show").select("improvements only").run()
    table = at.dataframe[0].value
    assert len(table) > 0 and set(table["status"]) == {"improvement"}
    at.selectbox(key="samples_show").select("changed either way").run()
    assert set(at.dataframe[0].value["status"]) == {"regression", "improvement"}
    at.selectbox(key="samples_show").select("all items").run()
    at.selectbox(key="samples_sort").select("delta: largest gain first").run()
    deltas = [d for d in at.dataframe[0].value["delta"] if not math.isnan(d)]
    assert deltas == sorted(deltas, reverse=True) and deltas[0] > 0
    # chat is a reference kind: no extracted answer, so the outputs are the columns shown
    at.selectbox(key="samples_bench").select("chat").run()
    cols = list(at.dataframe[0].value.columns)
    assert "base_output" in cols and "tuned_output" in cols and "base_answer" not in cols


def test_checkpoints_overlay_and_rounded_values(app_env) -> None:
    at = open_page("checkpoints")
    assert any(h.value == "Target vs general benchmarks by step" for h in at.subheader)
    assert len(at.get("vega_lite_chart")) == 3
    assert list(at.dataframe[0].value["95% CI"])[0] == "[0.260, 0.340]"
    assert not any(LONG_FLOAT.search(c.value) for c in at.caption)


def test_runs_metrics_next_to_the_name(app_env) -> None:
    at = open_page("runs")
    cols = list(at.dataframe[0].value.columns)
    assert cols[:2] == ["run_id", "label"] and "/" in cols[2]
    reports, _ = app_env
    base, _ = run_ids(reports)
    at.selectbox(key="runs_detail").select(base.name).run()
    detail = at.dataframe[1].value
    assert all(not LONG_FLOAT.search(str(v)) for v in detail["95% CI"])
