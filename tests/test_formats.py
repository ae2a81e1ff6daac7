"""SFT data formats: detection, normalisation, and errors naming file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.errors import SftevalError
from sfteval.formats import load_conversations


def _write(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_three_formats_normalise_to_the_same_conversation(tmp_path: Path) -> None:
    alpaca = _write(tmp_path / "a.jsonl", [{"instruction": "Add", "input": "2 3", "output": "5", "system": "Be brief."}])
    share = _write(tmp_path / "s.jsonl", [{"conversations": [
        {"from": "system", "value": "Be brief."}, {"from": "human", "value": "Add\n\n2 3"}, {"from": "gpt", "value": "5"}]}])
    msgs = _write(tmp_path / "m.jsonl", [{"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Add\n\n2 3"}, {"role": "assistant", "content": "5"}]}])
    convs = [load_conversations(p)[0][0] for p in (alpaca, share, msgs)]
    assert convs[0].messages == convs[1].messages == convs[2].messages
    assert convs[0].id == "0" and convs[0].source.endswith("a.jsonl:1")


def test_json_list_and_parquet(tmp_path: Path) -> None:
    rows = [{"id": "x1", "instruction": "Say hi", "output": "hi"}]
    (tmp_path / "d.json").write_text(json.dumps(rows))
    assert load_conversations(tmp_path / "d.json")[0][0].id == "x1"
    import pandas as pd

    pd.DataFrame(rows).to_parquet(tmp_path / "d.parquet")
    assert load_conversations(tmp_path / "d.parquet")[0][0].messages[-1].content == "hi"


@pytest.mark.parametrize(
    "rows, where",
    [
        (['{"instruction": "a", "output": "b"}', '{"instruction": "a", "output": '], "x.jsonl:2"),
        ([{"instruction": "a", "output": "b"}, {"instruction": "a", "outptu": "b"}], "x.jsonl:2 (field 'output')"),
        ([{"instruction": "a", "output": "b"}, {"instruction": "a", "output": "  "}], "x.jsonl:2"),
        ([{"messages": [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "q"}]}], "x.jsonl:1"),
        ([{"conversations": [{"from": "alien", "value": "q"}]}], "conversations[0].from"),
        ([{"messages": [{"role": "user"}]}], "messages[0].content"),
    ],
)
def test_bad_rows_name_file_line_and_field(tmp_path: Path, rows: list, where: str) -> None:
    path = _write(tmp_path / "x.jsonl", rows)
    with pytest.raises(SftevalError) as e:
        load_conversations(path)
    assert where in str(e.value)


def test_skip_mode_counts_reasons(tmp_path: Path) -> None:
    path = _write(tmp_path / "x.jsonl", [{"instruction": "a", "output": "b"}, {"instruction": "a", "output": ""}, {"instruction": "c", "output": "d"}])
    convs, report = load_conversations(path, on_bad="skip")
    assert [c.id for c in convs] == ["0", "2"]
    assert report.skipped == 1 and report.kept == 2


def test_missing_file_and_duplicate_ids(tmp_path: Path) -> None:
    with pytest.raises(SftevalError, match="not found"):
        load_conversations(tmp_path / "nope.jsonl")
    path = _write(tmp_path / "d.jsonl", [{"id": 1, "instruction": "a", "output": "b"}, {"id": 1, "instruction": "c", "output": "d"}])
    with pytest.raises(SftevalError, match="duplicate id '1'"):
        load_conversations(path)
