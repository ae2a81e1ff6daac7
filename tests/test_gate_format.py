"""`sfteval gate --format json`: the verdict and every check, on stdout and in OUT/gate.json."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from runfolders import FakeBench, write_run

from sfteval.cli import main


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["sfteval", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return int(exc.value.code or 0), capsys.readouterr().out


def test_gate_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(1)
    q = rng.beta(0.6, 0.4, 300)
    base = write_run(tmp_path, "base", [FakeBench("mmlu", {"accuracy": (rng.random(300) < q).astype(float)},
                                                  general=True)], model_path="/m/base")
    tuned = write_run(tmp_path, "tuned", [FakeBench("mmlu", {"accuracy": (rng.random(300) < q).astype(float)},
                                                    general=True)], model_path="/m/tuned")
    assert _cli(monkeypatch, capsys, "compare", str(base), str(tuned), "--out", str(tmp_path / "cmp"))[0] == 0
    rules = tmp_path / "gate.toml"
    rules.write_text('[max_drop]\n"mmlu/accuracy" = 0.2\n')
    code, out = _cli(monkeypatch, capsys, "gate", str(tmp_path / "cmp"), "--rules", str(rules), "--out",
                     str(tmp_path / "g"), "--format", "json")
    doc = json.loads(out)
    assert doc == json.loads((tmp_path / "g" / "gate.json").read_text())
    assert doc["schema"] == "sfteval.gate/1" and doc["exit_code"] == code
    (check,) = doc["checks"]
    assert check["rule"] == "max_drop" and check["target"] == "mmlu/accuracy" and check["threshold"] == 0.2
    assert check["verdict"] in ("pass", "inconclusive") and len(check["ci95"]) == 2
    code2, md = _cli(monkeypatch, capsys, "gate", str(tmp_path / "cmp"), "--rules", str(rules), "--out",
                     str(tmp_path / "g2"))
    assert code2 == code and "mmlu/accuracy" in md and (tmp_path / "g2" / "gate.json").is_file()
    assert _cli(monkeypatch, capsys, "gate", str(tmp_path / "cmp"), "--rules", str(rules), "--format", "xml")[0] == 2


def test_report_reads_the_gates_json(tmp_path: Path) -> None:
    from sfteval.report_verdict import read_gate

    (tmp_path / "gate.json").write_text(json.dumps({"verdict": "inconclusive", "exit_code": 3, "checks": [
        {"verdict": "pass"}, {"verdict": "inconclusive"}, {"verdict": "pass"}]}))
    assert read_gate(tmp_path) == "INCONCLUSIVE (exit 3; 1 inconclusive, 2 pass)"
    (tmp_path / "gate.json").write_text("{broken")
    (tmp_path / "summary.md").write_text("## sfteval gate: FAIL\n")
    assert read_gate(tmp_path) == "FAIL"
