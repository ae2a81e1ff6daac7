"""sfteval.runfolder's listing and readers, and the Samples page's data path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from dash_helpers import run_ids
from data import filter_pairs, pair_samples

from sfteval import runfolder as runs
from sfteval.errors import SftevalError


def test_list_runs_and_headline(reports: Path) -> None:
    found = runs.list_runs(reports)
    assert {r.label for r in found} == {"llama-base", "llama-sft"} and all(r.complete for r in found)
    heads = {h.benchmark: h for h in found[0].headline}
    assert heads["gsm8k"].metric == "exact_match_strict" and heads["chat"].metric == "rougeL"
    assert runs.list_sweeps(reports)[0].parent.name == "demo"
    assert runs.read_comparison(runs.list_comparisons(reports)[0]).schema == "sfteval.compare/1"


def test_incomplete_run_is_listed_not_skipped(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "x-1"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "gsm8k.jsonl").write_text('{"id": "1", "output": "a"}\n')
    (info,) = runs.list_runs(tmp_path)
    assert not info.complete and info.benchmarks == ("gsm8k",)


@pytest.mark.parametrize("fast", [True, False])
def test_samples_reader_torn_tail_and_bad_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fast: bool) -> None:
    if not fast:  # the plain-json path must keep the same contract
        import builtins

        real = builtins.__import__
        monkeypatch.setattr(builtins, "__import__",
                            lambda name, *a, **k: (_ for _ in ()).throw(ImportError(name)) if name == "orjson"
                            else real(name, *a, **k))
    run = tmp_path / "r"
    (run / "samples").mkdir(parents=True)
    f = run / "samples" / "b.jsonl"
    f.write_text('{"id": "1", "output": "a"}\n\n{"id": "2", "outputs": ["b", "c"]}\n{"id": "3", "outp')
    rows = [s for _, s in runs.iter_sample_lines(f)]  # torn last line (a crash mid-write) is skipped
    assert [r.id for r in rows] == ["1", "2"] and rows[1].output == "b" and rows[1].outputs == ("b", "c")
    f.write_text('{"id": "1"}\n{"id": 2,,}\n{"id": "3"}\n')
    with pytest.raises(SftevalError) as e:
        list(runs.iter_sample_lines(f))
    assert e.value.line == 2 and str(f) in str(e.value)
    f.write_text('{"output": "no id"}\n')
    with pytest.raises(SftevalError, match="id"):
        list(runs.iter_sample_lines(f))


def test_wrong_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema": "other/9", "benchmarks": {}}))
    with pytest.raises(SftevalError, match="schema"):
        runs.read_results(tmp_path)
    (tmp_path / "sweep.json").write_text(json.dumps({"schema": "sfteval.sweep/1", "checkpoints": [{"x": 1}]}))
    with pytest.raises(SftevalError, match="step"):
        runs.read_sweep(tmp_path / "sweep.json")


def test_pair_samples_order_and_filters(reports: Path) -> None:
    base, tuned = run_ids(reports)
    df = pair_samples(base, tuned, "gsm8k", "exact_match_strict")
    statuses = list(df["status"])
    assert statuses == sorted(statuses, key=["regression", "improvement", "same", "unscored", "only base",
                                             "only tuned"].index)
    reg = df[df["status"] == "regression"]
    assert (reg["delta"] < 0).all() and (reg["base_score"] == 1).all()
    assert list(filter_pairs(df, ids="3, 5")["id"]) == sorted(["3", "5"], key=list(df["id"]).index)
    assert list(filter_pairs(df, text="SFT REASONING FOR ITEM 4.")["id"]) == ["4"]
    assert filter_pairs(df, statuses=["improvement"])["status"].eq("improvement").all()
    assert len(filter_pairs(df, text="no such text anywhere")) == 0
