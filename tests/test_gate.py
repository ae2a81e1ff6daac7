"""The gate: rule parsing, verdicts, outputs, exit codes, and calibration by simulation."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from runfolders import FakeBench, write_run
from sfteval.compare import CompareSettings, compare_runs, load_run, write_comparison
from sfteval.errors import SftevalError
from sfteval.gate import Rules, evaluate, judge_max_drop, judge_min, junit_xml, load_rules, parse_rules
from sfteval.paired import paired_bootstrap


def run_cli(argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    from sfteval.cli import main

    monkeypatch.setattr(sys, "argv", ["sfteval", *argv])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0)


@pytest.mark.parametrize(
    ("lo", "hi", "m", "verdict"),
    [(0.5, 0.6, 0.4, "pass"), (0.4, 0.6, 0.4, "pass"), (0.3, 0.39, 0.4, "fail"), (0.35, 0.45, 0.4, "inconclusive")],
)
def test_judge_min(lo: float, hi: float, m: float, verdict: str) -> None:
    assert judge_min(lo, hi, m) == verdict


@pytest.mark.parametrize(
    ("lo", "hi", "d", "verdict"),
    [
        (-0.03, 0.02, 0.05, "pass"),  # the CI rules out a 5-point drop
        (-0.04, -0.01, 0.05, "pass"),  # a real but small drop, within the allowance
        (-0.08, -0.02, 0.05, "fail"),  # a drop is shown and 5 points is not ruled out
        (-0.08, 0.01, 0.05, "inconclusive"),  # too wide to tell
        (0.0, 0.0, 0.0, "pass"),  # identical greedy outputs
    ],
)
def test_judge_max_drop(lo: float, hi: float, d: float, verdict: str) -> None:
    assert judge_max_drop(lo, hi, d) == verdict


def test_parse_rules_errors_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(SftevalError, match="max_drop.gsm8k"):
        parse_rules({"max_drop": {"gsm8k": "five"}}, "g.toml")
    with pytest.raises(SftevalError, match="unknown field"):
        parse_rules({"min": {}, "mni": {}}, "g.toml")
    with pytest.raises(SftevalError, match="no rules"):
        parse_rules({}, "g.toml")
    with pytest.raises(SftevalError, match=">= 0"):
        parse_rules({"max_drop": {"*": -0.1}}, "g.toml")


def test_rules_from_pyproject(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.sfteval.gate]\ninconclusive = "fail"\n[tool.sfteval.gate.min]\n"a" = 0.5\n')
    monkeypatch.chdir(tmp_path)
    rules = load_rules(None)
    assert rules.min == {"a": 0.5} and rules.inconclusive == "fail"
    (tmp_path / "pyproject.toml").write_text("[project]\nname='x'\n")
    with pytest.raises(SftevalError, match="no gate rules"):
        load_rules(None)


def _pair(tmp: Path, base_scores: np.ndarray, tuned_scores: np.ndarray) -> dict:
    b = write_run(tmp, "base", [FakeBench("mmlu", {"accuracy": base_scores}, general=True)])
    t = write_run(tmp, "tuned", [FakeBench("mmlu", {"accuracy": tuned_scores}, general=True)])
    return compare_runs(load_run(b), load_run(t), CompareSettings(resamples=1000))


def test_evaluate_comparison_verdicts_and_junit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    q = rng.beta(0.6, 0.4, 1000)
    base = (rng.random(1000) < q).astype(float)
    tuned = (rng.random(1000) < q * 0.8).astype(float)  # a ~12-point drop
    comp = _pair(tmp_path, base, tuned)
    res = evaluate(Rules(min={"mmlu": 0.2}, max_drop={"*": 0.05}), comp)
    assert res.verdict == "fail" and res.exit_code == 1
    by_rule = {c.rule: c for c in res.checks}
    assert by_rule["min"].verdict == "pass" and by_rule["max_drop"].verdict == "fail"
    assert by_rule["max_drop"].detectable_drop is not None and 0 < by_rule["max_drop"].detectable_drop < 0.1
    root = ET.fromstring(junit_xml(res))
    suite = root.find("testsuite")
    assert suite is not None and suite.get("failures") == "1" and suite.get("tests") == "2"
    # a rule that names a metric the comparison lacks is an error, not a silent pass
    err = evaluate(Rules(min={"mmlu/acc": 0.2}, max_drop={}), comp)
    assert err.verdict == "error" and err.exit_code == 2


def test_max_drop_on_a_single_run_is_an_error(tmp_path: Path) -> None:
    run = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1, 1]})])
    with pytest.raises(SftevalError, match="need a comparison"):
        evaluate(Rules(min={}, max_drop={"*": 0.05}), load_run(run).results.to_dict())


def test_inconclusive_exit_code_and_fail_mode(tmp_path: Path) -> None:
    run = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": [1, 0, 1, 0, 1, 1, 0, 1]})])
    results = load_run(run).results.to_dict()
    assert evaluate(Rules(min={"mmlu": 0.6}, max_drop={}), results).exit_code == 3
    assert evaluate(Rules(min={"mmlu": 0.6}, max_drop={}, inconclusive="fail"), results).exit_code == 1


def test_gate_cli_writes_junit_summary_and_step_summary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    q = rng.beta(0.6, 0.4, 400)
    comp = _pair(tmp_path, (rng.random(400) < q).astype(float), (rng.random(400) < q).astype(float))
    cdir = write_comparison(comp, tmp_path / "cmp").parent
    rules = tmp_path / "gate.toml"
    rules.write_text('[min]\n"mmlu" = 0.1\n[max_drop]\n"*" = 0.10\n')
    step = tmp_path / "step.md"
    step.write_text("previous step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    code = run_cli(["gate", str(cdir), "--rules", str(rules), "--out", str(tmp_path / "gate")], monkeypatch)
    assert code == 0
    assert (tmp_path / "gate" / "junit.xml").is_file()
    text = step.read_text()
    assert text.startswith("previous step\n") and "sfteval gate: PASS" in text
    # missing rules -> error exit 2 with a clear message
    monkeypatch.chdir(tmp_path)
    assert run_cli(["gate", str(cdir), "--out", str(tmp_path / "g2")], monkeypatch) == 2


# ----------------------------------------------------------------------------- calibration

N_ITEMS, TRIALS = 1000, 400


def _simulate(drop: float, seed: int, a: float = 0.6, b: float = 0.4) -> np.ndarray:
    """Gate verdicts for TRIALS comparisons of N_ITEMS pass/fail items.

    Each item has its own solve probability q ~ Beta(a, b) (models solve some items
    reliably and others never); base and tuned sample independently given q (different
    sampling seeds). The tuned model's probabilities are scaled so the expected score
    drops by `drop`. Rule under test: max_drop = 0.05.
    """
    rng = np.random.default_rng(seed)
    q = rng.beta(a, b, size=(TRIALS, N_ITEMS))
    base = rng.random((TRIALS, N_ITEMS)) < q
    tuned = rng.random((TRIALS, N_ITEMS)) < q * (1 - drop / (a / (a + b)))
    diff = tuned.astype(float) - base
    verdicts = []
    for t in range(TRIALS):
        ci = paired_bootstrap(diff[t], seed=t, resamples=2000).ci95
        verdicts.append(judge_max_drop(ci[0], ci[1], 0.05))
    return np.array(verdicts)


def test_calibration_self_vs_self_fails_at_most_5_percent() -> None:
    verdicts = _simulate(drop=0.0, seed=10)
    assert np.mean(verdicts == "fail") <= 0.05
    assert np.mean(verdicts == "pass") >= 0.80  # and mostly passes rather than hedging


def test_calibration_catches_a_5_point_drop_at_least_80_percent() -> None:
    verdicts = _simulate(drop=0.05, seed=20)
    assert np.mean(verdicts == "fail") >= 0.80


def test_rules_that_match_nothing_are_an_error_not_a_pass() -> None:
    empty = {"schema": "sfteval.compare/1", "base": {"run_id": "a"}, "tuned": {"run_id": "b"}, "benchmarks": {}}
    res = evaluate(Rules(min={}, max_drop={"*": 0.05}), empty)
    assert res.verdict == "error" and res.exit_code == 2
