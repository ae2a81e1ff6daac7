"""Every dashboard page renders on fixture runs (Streamlit AppTest), and shows the
numbers it should."""

from __future__ import annotations

from pathlib import Path

import pytest
from dash_helpers import open_page as _open
from dash_helpers import rendered_text as _text
from dash_helpers import run_ids


def test_runs_page_lists_runs_and_filters(app_env) -> None:
    reports, _ = app_env
    at = _open("runs")
    assert at.title[0].value == "Runs"
    table = at.dataframe[0].value
    assert len(table) == 2 and set(table["label"]) == {"llama-base", "llama-sft"}
    assert {"gsm8k/exact_match_strict", "chat/rougeL"} <= set(table.columns)
    at.text_input(key="runs_filter").input("sft").run()
    assert list(at.dataframe[0].value["label"]) == ["llama-sft"]
    base, _ = run_ids(reports)
    at.text_input(key="runs_filter").input("").run()
    at.selectbox(key="runs_detail").select(base.name).run()
    assert not at.exception
    assert any(str(base) in m.value for m in at.markdown)


def test_runs_page_without_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SFTEVAL_REPORTS", str(tmp_path))
    at = _open("runs")
    assert "No runs" in at.info[0].value


def test_samples_page_regressions_first_and_search(app_env) -> None:
    reports, _ = app_env
    base, tuned = run_ids(reports)
    at = _open("samples")
    at.selectbox(key="samples_base").select(base.name).run()
    at.selectbox(key="samples_tuned").select(tuned.name).run()
    at.selectbox(key="samples_bench").select("gsm8k").run()
    table = at.dataframe[0].value
    statuses = list(table["status"])
    n_reg = statuses.count("regression")
    assert n_reg > 0 and statuses[:n_reg] == ["regression"] * n_reg
    assert {m.label: m.value for m in at.metric}["regression"] == str(n_reg)
    # The first expanded item is a regression with both outputs side by side.
    first = at.expander[0]
    assert "regression" in first.label
    codes = [c.value for c in first.code]
    assert any(v.startswith("base reasoning") for v in codes) and any(v.startswith("sft reasoning") for v in codes)
    at.text_input(key="samples_ids").input("7").run()
    assert list(at.dataframe[0].value["id"]) == ["7"]
    at.text_input(key="samples_ids").input("").run()
    at.text_input(key="samples_text").input("ITEM 3.").run()
    assert list(at.dataframe[0].value["id"]) == ["3"]


def test_compare_page_shows_deltas_verdicts_flips(app_env) -> None:
    at = _open("compare")
    table = at.dataframe[0].value
    row = table[table["benchmark"] == "gsm8k"].iloc[0]
    assert row["delta"] == pytest.approx(-0.17) and row["verdict"].startswith("forgot")
    assert table[table["benchmark"] == "chat"].iloc[0]["verdict"] == "better"
    assert any("settings.gen.seed" in w.value for w in at.warning)  # non-blocking mismatch shown
    text = _text(at)
    assert len(at.get("vega_lite_chart")) == 2  # the forest plot and the breakdown bars
    assert "gsm8k: 3 lost, 1 gained" in [e.label for e in at.expander]
    assert "FLIP-TUNED-OUT" in text
    breakdown = at.dataframe[1].value
    assert list(breakdown["subject"]) == ["algebra", "geometry"]  # sorted by delta, worst first


def test_checkpoints_page_plots_metric_and_losses(app_env) -> None:
    at = _open("checkpoints")
    assert at.selectbox(key="ck_metric").value == "heldout/rougeL"
    table = at.dataframe[0].value
    assert list(table["step"]) == [100, 200, 300]
    assert any("step 200" in c.value for c in at.caption)
    assert len(at.get("vega_lite_chart")) == 3  # the metric, target vs general benchmarks, the losses


def test_ratings_page_creates_study_and_reports(app_env) -> None:
    reports, db = app_env
    base, tuned = run_ids(reports)
    at = _open("ratings")
    at.selectbox(key="new_base").select(base.name).run()
    at.selectbox(key="new_tuned").select(tuned.name).run()
    at.selectbox(key="new_bench").select("chat").run()
    at.button(key="new_create").click().run()
    assert not at.exception
    assert "created" in at.success[0].value
    from sfteval.ratings import VoteStore, tuned_side

    store = VoteStore(db)
    (study,) = store.studies()
    for k, item in enumerate(store.order_for(study.study_id, "ann")[:6]):
        store.record_vote(study.study_id, item, "ann", tuned_side(study.study_id, "ann", item) if k < 4 else "tie")
        store.record_vote(study.study_id, item, "bob", tuned_side(study.study_id, "bob", item))
    at.run()
    metrics = {m.label: m.value for m in at.metric}
    # ann: 4 tuned + 2 ties; bob: 6 tuned -> item means 1,1,1,1,.75,.75 -> 0.9167
    assert metrics["Tuned win rate"] == "91.7%"
    assert metrics["Items rated"] == f"6 / {study.n_items}"
    raters = at.dataframe[0].value
    assert list(raters["rater"]) == ["ann", "bob"] and list(raters["votes"]) == [6, 6]
    assert metrics["Raw pairwise agreement"] == "67%"
    assert at.get("download_button")


def test_compare_page_reads_what_compare_writes(reports: Path, tmp_path: Path, monkeypatch) -> None:
    """The page against the real `sfteval.compare` output, not only the hand-written file."""
    import shutil

    from sfteval.compare import compare_runs, default_out, load_run, write_comparison

    out = tmp_path / "reports"
    shutil.copytree(reports / "runs", out / "runs")
    base, tuned = run_ids(out)
    comp = compare_runs(load_run(base), load_run(tuned))
    write_comparison(comp, default_out(out, comp))
    monkeypatch.setenv("SFTEVAL_REPORTS", str(out))
    at = _open("compare")
    table = at.dataframe[0].value
    assert set(table["benchmark"]) == {"gsm8k", "chat"}
    gsm = table[(table["benchmark"] == "gsm8k") & table["primary"]].iloc[0]
    assert gsm["delta"] == pytest.approx(comp["benchmarks"]["gsm8k"]["metrics"]["exact_match_strict"]["delta"]["value"])
    assert len(at.get("vega_lite_chart")) >= 1


@pytest.mark.parametrize("page", ["runs", "compare", "samples", "checkpoints", "rate", "ratings"])
def test_every_page_handles_an_empty_reports_folder(page: str, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("SFTEVAL_REPORTS", str(tmp_path))
    monkeypatch.setenv("SFTEVAL_RATINGS_DB", str(tmp_path / "r.sqlite3"))
    at = _open(page)
    assert at.info, "an empty folder should explain what to do"


def test_checkpoints_page_falls_back_to_train_log_jsonl(tmp_path: Path, monkeypatch) -> None:
    import json

    src = tmp_path / "trainer-out"
    src.mkdir()
    (src / "train_log.jsonl").write_text("".join(
        json.dumps({"step": s, "train_loss": 3.0 - s / 100, "eval_loss": 2.5}) + "\n" for s in (10, 20, 30)))
    sweep = {"schema": "sfteval.sweep/1", "source": str(src), "train_log": [], "select": {}, "best": {},
             "checkpoints": [{"step": 10, "metrics": {"b": {"m": {"value": 0.1, "stderr": 0.01,
                                                                  "ci95": [0.08, 0.12], "n": 9}}}}]}
    (tmp_path / "sweeps" / "s").mkdir(parents=True)
    (tmp_path / "sweeps" / "s" / "sweep.json").write_text(json.dumps(sweep))
    monkeypatch.setenv("SFTEVAL_REPORTS", str(tmp_path))
    at = _open("checkpoints")
    assert not at.info and len(at.get("vega_lite_chart")) == 3  # metric, target vs general, losses


def test_compare_page_lists_every_registered_diagnosis(app_env) -> None:
    from sfteval.diagnoses import DIAGNOSES

    at = _open("compare")
    shown = [e.label for e in at.expander] + [c.value for c in at.caption]
    for name in DIAGNOSES:  # the page reads the registry: a new diagnosis appears without a page edit
        assert any(s == name or s.startswith(f"{name} (") or f"`{name}`" in s for s in shown), (name, shown)
