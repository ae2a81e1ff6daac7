"""Gate messages a user can act on: a threshold outside the metric's range is an error
(points written for a fraction), a misspelt metric's error lists what is there, and the
printed summary states each error's reason."""

from __future__ import annotations

import numpy as np
import pytest

from sfteval.compare import CompareSettings, compare_runs, load_run
from sfteval.gate import Rules, evaluate, markdown_summary
from sfteval.metric_range import known_range, threshold_problem
from tests.runfolders import FakeBench, write_run


@pytest.fixture()
def comparison(tmp_path):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    base = (rng.random(200) < 0.6).astype(float)
    tuned = np.where(rng.random(200) < 0.05, 0.0, base)
    b = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": base, "accuracy_norm": base}, general=True)])
    t = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": tuned, "accuracy_norm": tuned}, general=True)])
    return compare_runs(load_run(b), load_run(t), CompareSettings(resamples=500))


def test_points_for_a_fraction_is_an_error_not_a_pass(comparison) -> None:  # type: ignore[no-untyped-def]
    res = evaluate(Rules(min={}, max_drop={"*": 5}), comparison)
    assert res.verdict == "error" and res.exit_code == 2
    reason = res.checks[0].reason
    assert "outside accuracy's range [0, 1]" in reason and "write 0.05" in reason
    low = evaluate(Rules(min={"mmlu": 60}, max_drop={}), comparison)
    assert low.verdict == "error" and "minimum 60" in low.checks[0].reason
    summary = markdown_summary(res)
    assert "**ERROR** `mmlu/accuracy`: rule max_drop.*: allowed drop 5 is outside" in summary
    assert evaluate(Rules(min={}, max_drop={"*": 0.05}), comparison).verdict != "error"  # in range: judged


def test_a_misspelt_metric_lists_the_available_ones(comparison) -> None:  # type: ignore[no-untyped-def]
    res = evaluate(Rules(min={}, max_drop={"mmlu/acc": 0.05}), comparison)
    assert res.verdict == "error"
    summary = markdown_summary(res)
    assert "available: mmlu/accuracy (primary), mmlu/accuracy_norm" in summary


def test_known_ranges() -> None:
    assert known_range("exact_match_strict") == (0.0, 1.0) and known_range("pass@1") == (0.0, 1.0)
    assert known_range("bleu") == (0.0, 100.0) and known_range("my_custom") is None
    assert threshold_problem("max_drop", "bleu", 5) is None  # 5 BLEU points is a fine drop
    assert threshold_problem("min", "my_custom", 500) is None  # unknown range: not checked
    assert threshold_problem("max_drop", "rougeL", 1.0) is None
