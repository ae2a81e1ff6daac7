"""A bad line in the last benchmark's data fails before any model or engine starts.

The backend registered here only records that it was constructed: the runner must never
get that far when any selected benchmark's data is bad.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sfteval import backends
from sfteval.config import EngineSettings, RunConfig
from sfteval.errors import SftevalError
from sfteval.runner import execute_run

CONSTRUCTED: list[str] = []


class RecordingBackend:
    """Stands in for a model: constructing it is the event under test."""

    name = "recording"
    chunk_size = 64

    def __init__(self, model_path: str, engine: EngineSettings = EngineSettings()) -> None:
        CONSTRUCTED.append(model_path)
        raise AssertionError("a model was started before the data was checked")

    def info(self) -> dict[str, Any]:
        return {"name": self.name}

    def close(self) -> None:
        pass


@pytest.fixture()
def recording(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    CONSTRUCTED.clear()
    monkeypatch.setitem(backends.BACKENDS, "recording", f"{__name__}:RecordingBackend")
    return CONSTRUCTED


def _heldout(path: Path, last: str) -> Path:
    good = [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in good) + last + "\n")
    return path


@pytest.mark.parametrize(
    ("last", "expect"),
    [
        ('{"instruction": "Say 3.", "output": ', ":4: malformed JSON line"),
        ('{"instruction": "Say 3.", "output": 3}', ":4 (field 'output'): expected text, got int"),
        ('{"id": "1", "instruction": "Say 3.", "output": "3"}', ":4 (field 'id'): duplicate id '1' (first at line 2)"),
    ],
)
def test_bad_line_in_the_last_benchmark_fails_before_the_backend(
    tiny_model: Path, tmp_path: Path, recording: list[str], last: str, expect: str
) -> None:
    bad = _heldout(tmp_path / "val.jsonl", last)
    if "duplicate" in expect:  # ids: the row index unless the row has its own; give the first rows ids
        rows = [json.loads(x) for x in bad.read_text().splitlines()]
        for i, r in enumerate(rows[:3]):
            r["id"] = str(i)
        bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = RunConfig(checkpoint=str(tiny_model), benchmarks=("offline_gsm8k", "offline_mmlu", "heldout"),
                    data={"heldout": str(bad)}, backend="recording", out=str(tmp_path / "reports"))
    with pytest.raises(SftevalError) as e:
        execute_run(cfg)
    assert f"{bad}{expect}" in str(e.value)
    assert recording == []  # never constructed
    assert not list((tmp_path / "reports").glob("runs/*/samples/*.jsonl"))


def test_empty_data_file_is_named_before_the_backend(tiny_model: Path, tmp_path: Path, recording: list[str]) -> None:
    empty = tmp_path / "val.jsonl"
    empty.write_text("")
    cfg = RunConfig(checkpoint=str(tiny_model), benchmarks=("offline_gsm8k", "heldout"), data={"heldout": str(empty)},
                    backend="recording", out=str(tmp_path / "reports"))
    with pytest.raises(SftevalError, match=rf"{empty}: empty data file \(no rows\)"):
        execute_run(cfg)
    assert recording == []


def test_fewshot_data_for_an_unselected_benchmark_is_refused(tmp_path: Path) -> None:
    outs = tmp_path / "o.jsonl"
    outs.write_text('{"id": "0", "output": "#### 1"}\n')
    cfg = RunConfig(replay=str(outs), label="x", benchmarks=("offline_gsm8k",), fewshot_data={"gsm8k": "p.jsonl"},
                    out=str(tmp_path))
    with pytest.raises(SftevalError, match="--fewshot-data names benchmark"):
        execute_run(cfg)
