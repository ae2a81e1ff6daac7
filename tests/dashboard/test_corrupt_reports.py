"""A reports folder holding damaged results.json files (and a damaged comparison.json and
sweep.json): every page still renders, each page names the skipped file and why, and
the readable runs, comparison and sweep stay usable (#15)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from dash_helpers import open_page, run_ids

PAGES = ("runs", "compare", "samples", "checkpoints", "rate", "ratings")
LISTING = ("runs", "samples", "ratings")  # the pages that list run folders

BROKEN = {
    "torn-00000000": b'{"schema": "sfteval.run/1", "benchmarks": {"gsm8k": {"n": 3',  # cut off mid-write
    "list-00000000": b"[1, 2, 3]\n",
    "types-00000000": b'{"schema": "sfteval.run/1", "model": "not an object", "benchmarks": {"gsm8k": 7}}\n',
    "bytes-00000000": b"\xff\xfe\x00\x01 not text",
    "schema-00000000": b'{"schema": "something.else/9", "benchmarks": {}}\n',
}


@pytest.fixture()
def corrupt_env(reports: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    out = tmp_path / "reports"
    shutil.copytree(reports, out)
    for name, raw in BROKEN.items():
        (out / "runs" / name).mkdir()
        (out / "runs" / name / "results.json").write_bytes(raw)
    (out / "compare" / "broken").mkdir(parents=True)
    (out / "compare" / "broken" / "comparison.json").write_bytes(b'{"schema": "sfteval.compare/1", "ba')
    (out / "sweeps" / "aaa-broken").mkdir(parents=True)  # sorts first: the page opens on it
    (out / "sweeps" / "aaa-broken" / "sweep.json").write_bytes(b"\x00\x01")
    monkeypatch.setenv("SFTEVAL_REPORTS", str(out))
    monkeypatch.setenv("SFTEVAL_RATINGS_DB", str(tmp_path / "ratings.sqlite3"))
    return out


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_beside_corrupt_runs(corrupt_env: Path, page: str) -> None:
    at = open_page(page)  # asserts no exception
    if page in LISTING:
        warned = "\n".join(w.value for w in at.warning)
        for name in BROKEN:
            assert str(corrupt_env / "runs" / name / "results.json") in warned, (name, warned)
        assert "malformed JSON" in warned and "schema" in warned  # and why
    if page == "compare":
        assert str(corrupt_env / "compare" / "broken" / "comparison.json") in "\n".join(w.value for w in at.warning)
        assert at.dataframe[0].value is not None  # the readable comparison is still shown
    if page == "checkpoints":
        assert str(corrupt_env / "sweeps" / "aaa-broken" / "sweep.json") in "\n".join(e.value for e in at.error)
        at.selectbox(key="ck_sweep").select_index(1).run()  # the readable sweep still opens
        assert not at.exception and at.selectbox(key="ck_metric").value == "heldout/rougeL"


def test_readable_runs_still_listed_and_paired(corrupt_env: Path) -> None:
    at = open_page("runs")
    assert set(at.dataframe[0].value["label"]) == {"llama-base", "llama-sft"}
    base, tuned = run_ids(corrupt_env)
    at = open_page("samples")
    at.selectbox(key="samples_base").select(base.name).run()
    at.selectbox(key="samples_tuned").select(tuned.name).run()
    assert not at.exception and len(at.dataframe[0].value) > 0


def test_samples_page_names_a_samples_file_with_an_id_twice(corrupt_env: Path) -> None:
    base, tuned = run_ids(corrupt_env)
    path = tuned / "samples" / "gsm8k.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[0])  # a second writer appended item 0 again
    at = open_page("samples")
    at.selectbox(key="samples_base").select(base.name).run()
    at.selectbox(key="samples_tuned").select(tuned.name).run()
    at.selectbox(key="samples_bench").select("gsm8k").run()
    assert not at.exception
    errors = "\n".join(e.value for e in at.error)
    assert f"{path}:{len(lines) + 1}" in errors and "appears twice" in errors
