"""sfteval.runfolder: typed records round-trip, one reader refuses what it does not know,
one writer (shared by the runner and tests/runfolders.py) refuses undocumented finish
reasons, and the fixture's prompts_digest is the runner's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runfolders import FakeBench, write_run, write_sweep
from sfteval.errors import SftevalError
from sfteval.fileio import read_json, sha256_text
from sfteval.runfolder import (
    FINISH_REASONS,
    RUN_SCHEMA,
    RunResults,
    SampleLine,
    append_samples,
    prompts_digest,
    read_comparison,
    read_results,
    read_run,
    read_samples,
    read_sweep,
    read_target,
    read_train_log,
)


def test_results_round_trip_and_keep_unknown_keys(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", [FakeBench("mmlu", {"accuracy": [1, 0, 1]}, general=True, breakdown_by="subject",
                                              meta=[{"subject": "a"}, {"subject": "b"}, {"subject": "a"}])])
    raw = read_json(run / "results.json")
    raw["sessions"] = [{"new": 3}]  # a key this version does not know survives a rewrite
    raw["benchmarks"]["mmlu"]["future_field"] = 1
    res = RunResults.from_dict(raw)
    assert res.to_dict() == raw
    entry = res.benchmarks["mmlu"]
    assert entry.role == "general" and entry.general and entry.primary().value == pytest.approx(2 / 3)
    assert entry.breakdown["subject"]["a"]["accuracy"].value == 1.0


def test_read_results_does_not_touch_samples(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", [FakeBench("gsm8k", {"em": [1, 0]})])
    (run / "samples" / "gsm8k.jsonl").write_text("not json at all\n")
    assert read_results(run).benchmarks["gsm8k"].n == 2  # what gate and report need
    assert read_target(run)["schema"] == RUN_SCHEMA
    with pytest.raises(SftevalError):
        read_run(run)  # the whole folder is another matter


def test_reader_names_file_and_field(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps({"schema": RUN_SCHEMA, "benchmarks": {
        "x": {"role": "teacher", "metrics": {}}}}))
    with pytest.raises(SftevalError) as e:
        read_results(tmp_path)
    assert e.value.field == "benchmarks.x.role" and str(tmp_path / "results.json") in str(e.value)
    (tmp_path / "results.json").write_text(json.dumps({"schema": RUN_SCHEMA, "benchmarks": {
        "x": {"metrics": {"acc": {"stderr": 1}}}}}))
    with pytest.raises(SftevalError) as e:
        read_results(tmp_path)
    assert e.value.field == "benchmarks.x.metrics.acc"
    (tmp_path / "results.json").write_text(json.dumps({"schema": RUN_SCHEMA, "benchmarks": {
        "x": {"samples_schema": "sfteval.sample/9"}}}))
    with pytest.raises(SftevalError, match="samples schema"):
        read_results(tmp_path)
    with pytest.raises(SftevalError, match="schema"):
        read_comparison(tmp_path / "results.json")


def test_legacy_results_get_roles_from_flags_and_names() -> None:
    res = RunResults.from_dict({"schema": RUN_SCHEMA, "benchmarks": {
        "gsm8k": {}, "custom": {"general": True}, "train": {"general": False}, "demo_train": {},
        "heldout": {"general": False}}})
    assert {b: r.role for b, r in res.benchmarks.items()} == {
        "gsm8k": "general", "custom": "general", "train": "train", "demo_train": "train", "heldout": "target"}


def test_writer_refuses_undocumented_finish_reasons(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    line = SampleLine("1", "p", sha256_text("p"), ("out",), ("content_filter",), "a", "a", {"em": 1.0})
    with pytest.raises(SftevalError, match="content_filter"):
        append_samples(path, [line])
    assert not path.exists()
    with pytest.raises(SftevalError, match="finish reasons"):
        append_samples(path, [SampleLine("1", "p", "h", ("a", "b"), ("stop",), None, None, {})])
    for reason in FINISH_REASONS:
        append_samples(path, [SampleLine(reason, "p", "h", ("o",), (reason,), None, None, {})])
    assert [s.finish_reason for s in read_samples(path).values()] == list(FINISH_REASONS)
    # the documented list is the one the docs show
    doc = (Path(__file__).parents[1] / "docs" / "run-format.md").read_text()
    assert all(f'"{r}"' in doc for r in FINISH_REASONS)


def test_fixture_digest_is_the_runners(tmp_path: Path) -> None:
    run = write_run(tmp_path, "r", [FakeBench("gsm8k", {"em": [1, 0, 1]}, ids=["b", "a", "c"])])
    rows = read_samples(run / "samples" / "gsm8k.jsonl")
    expected = sha256_text("".join(f"{i}:{rows[i].prompt_hash}\n" for i in sorted(rows)))  # runner.py's formula
    assert read_results(run).benchmarks["gsm8k"].prompts_digest == expected == prompts_digest(
        {i: r.prompt_hash for i, r in rows.items()})


def test_n_gt_1_lines_round_trip(tmp_path: Path) -> None:
    d = {"id": "1", "prompt": "p", "prompt_hash": "h", "outputs": ["a", "b"], "finish_reasons": ["stop", "length"],
         "answer": None, "reference": "r", "scores": {"pass@1": 0.5}, "meta": {"num_tokens": [3, 9]}}
    s = SampleLine.from_dict(d)
    assert s.to_dict() == d and s.output == "a" and s.finish_reason == "stop" and s.num_tokens == 3.0


def test_sweep_and_train_log(tmp_path: Path) -> None:
    est = {"value": 0.5, "stderr": 0.1, "ci95": [0.3, 0.7], "n": 10, "method": "wilson"}
    path = write_sweep(tmp_path, "s", [{"step": 1, "metrics": {"h": {"m": est}}}], [{"step": 1, "train_loss": 2.0}],
                       select="h/m")
    sw = read_sweep(path.parent)
    assert sw.checkpoints[0].metric("h", "m").value == 0.5 and sw.train_log[0].train_loss == 2.0
    assert sw.to_dict() == read_json(path)
    log = tmp_path / "train_log.jsonl"
    log.write_text('{"step": 1, "train_loss": 1.5, "extra": 3}\n{"train_loss": 1}\n')
    with pytest.raises(SftevalError) as e:
        read_train_log(log)
    assert e.value.line == 2 and e.value.field == "step"


def test_a_replay_file_with_an_undocumented_finish_reason_is_refused_on_load(tmp_path: Path) -> None:
    from sfteval.replay import load_replay

    path = tmp_path / "outs.jsonl"
    path.write_text('{"id": "0", "output": "a", "finish_reason": "stop"}\n'
                    '{"id": "1", "output": "b", "finish_reason": "content_filter"}\n')
    with pytest.raises(SftevalError) as e:
        load_replay(str(path), ["offline_gsm8k"])
    assert e.value.line == 2 and e.value.field == "finish_reason" and "content_filter" in str(e.value)
    path.write_text('{"id": "0", "output": "a"}\n')  # no finish reason given: recorded as "unknown"
    assert load_replay(str(path), ["offline_gsm8k"]).outputs_for("offline_gsm8k", ["0"])[0].finish_reasons == ("unknown",)
