"""CLI basics a user meets first: --version, the resume hint on Ctrl-C, a status line
while the model loads, demo --help's time claims against the README, and compare's
lineage warning when the base given is not the tuned checkpoint's recorded base."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval import __version__
from tests.runfolders import FakeBench, write_run

ROOT = Path(__file__).resolve().parents[1]


def _cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    from sfteval import cli

    monkeypatch.setattr(sys, "argv", ["sfteval", *args])
    with pytest.raises(SystemExit) as e:
        cli.main()
    return int(e.value.code or 0)


def test_version_alone() -> None:
    r = subprocess.run([sys.executable, "-m", "sfteval.cli", "--version"], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"sfteval {__version__}"


def test_ctrl_c_prints_the_command_that_resumes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    import sfteval.commands.run as run_cmd

    def interrupted(cfg: object) -> Path:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_cmd, "run_with_progress", interrupted)
    outs = tmp_path / "my outs.jsonl"
    outs.write_text('{"id": "0", "output": "#### 1"}\n')
    args = ["run", "--replay", str(outs), "--name", "ext", "-b", "offline_gsm8k", "--out", str(tmp_path)]
    assert _cli(monkeypatch, *args) == 130
    err = capsys.readouterr().err
    assert "Resume with:" in err
    assert f"sfteval run --replay '{outs}' --name ext -b offline_gsm8k --out {tmp_path}" in err


def test_status_line_before_the_first_sample(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from sfteval.commands.run import run_with_progress
    from sfteval.config import RunConfig

    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(f'{{"id": "{i}", "output": "#### 1"}}\n' for i in range(2)))
    run_with_progress(RunConfig(replay=str(outs), label="x", benchmarks=("offline_gsm8k",), limit=2, out=str(tmp_path)))
    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first.startswith("offline_gsm8k: 0/2 done; reading benchmarks and replayed outputs"), err


def test_status_line_names_the_model_and_backend() -> None:
    from sfteval.commands.run import load_status
    from sfteval.config import RunConfig

    line = load_status(RunConfig(checkpoint="/m/ckpt", backend="vllm", benchmarks=("b",)))
    assert line.startswith("loading /m/ckpt (vllm backend)")


def _minutes(text: str) -> set[int]:
    return {int(m) for m in re.findall(r"(\d+) minutes", text)}


def test_demo_help_time_claims_match_the_readme() -> None:
    from sfteval.commands.demo import HELP

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Two commands"):readme.index("## What a run writes")]
    assert _minutes(HELP) and _minutes(HELP) <= _minutes(section), (_minutes(HELP), _minutes(section))


def test_compare_warns_when_the_base_is_not_the_recorded_base(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    bench = [FakeBench("offline_mmlu", {"accuracy": [1, 0, 1, 0]}, general=True)]
    base = write_run(tmp_path, "base", bench, model_path=str(tmp_path / "models" / "base"))
    other = write_run(tmp_path, "other", bench, model_path=str(tmp_path / "models" / "other"))
    tuned = write_run(tmp_path, "tuned", bench, model_path=str(tmp_path / "sft" / "checkpoint-10"),
                      trainer={"base_model": str(tmp_path / "models" / "base")})
    args = ["--resamples", "100", "--out", str(tmp_path / "c")]
    assert _cli(monkeypatch, "compare", str(base), str(tuned), *args) == 0
    assert "lineage" not in capsys.readouterr().err
    assert _cli(monkeypatch, "compare", str(other), str(tuned), *args) == 0
    err = capsys.readouterr().err
    assert "warning: lineage: the tuned checkpoint was trained from" in err and str(tmp_path / "models" / "other") in err


def test_lineage_by_hub_id_and_adapter_digest(tmp_path: Path) -> None:
    from sfteval.lineage import lineage_warning
    from sfteval.runfolder import read_results

    bench = [FakeBench("b", {"accuracy": [1, 0]})]
    base = write_run(tmp_path, "base", bench)
    tuned = write_run(tmp_path, "tuned", bench, trainer={"base_model": "Qwen/Qwen2.5-0.5B"})
    assert lineage_warning(base, tuned) is not None and "Qwen/Qwen2.5-0.5B" in lineage_warning(base, tuned)
    # nothing recorded: nothing to say
    assert lineage_warning(base, write_run(tmp_path, "plain", bench)) is None
    # an adapter records its base's digest: the same digest is the same base
    import json

    path = tuned / "results.json"
    doc = json.loads(path.read_text())
    doc["model"]["trainer"] = {}
    doc["model"]["fingerprint"]["base"] = {"name_or_path": "x", "digest": read_results(base).model.digest}
    path.write_text(json.dumps(doc))
    assert lineage_warning(base, tuned) is None
    doc["model"]["fingerprint"]["base"]["digest"] = "0" * 64
    path.write_text(json.dumps(doc))
    assert "adapter's base" in (lineage_warning(base, tuned) or "")


def test_the_lineage_warning_is_recorded_in_the_comparison_and_its_card(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """#20: the warning was printed and lost: comparison.json and the report's verdict card
    (what a reader opens a week later) did not say the base was not the recorded one."""
    import json

    bench = [FakeBench("offline_mmlu", {"accuracy": [1, 0, 1, 0]}, general=True)]
    other = write_run(tmp_path, "other", bench, model_path=str(tmp_path / "models" / "other"))
    tuned = write_run(tmp_path, "tuned", bench, model_path=str(tmp_path / "sft" / "checkpoint-10"),
                      trainer={"base_model": str(tmp_path / "models" / "base")})
    assert _cli(monkeypatch, "compare", str(other), str(tuned), "--resamples", "100", "--out", str(tmp_path / "c")) == 0
    comp = json.loads((tmp_path / "c" / "comparison.json").read_text())
    assert comp["lineage"].startswith("lineage: the tuned checkpoint was trained from")
    card = (tmp_path / "c" / "report.md").read_text()
    assert "| warning | lineage: the tuned checkpoint was trained from" in card
