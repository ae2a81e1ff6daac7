"""`import sfteval` and `sfteval --help` must stay fast: no torch, transformers, vllm."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "transformers", "vllm", "streamlit", "bert_score", "datasets")


def _modules_after(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sys.modules))"],
        capture_output=True, text=True, check=True,
    )
    return set(out.stdout.split())


def test_import_sfteval_is_light() -> None:
    loaded = _modules_after("import sfteval, sfteval.cli, sfteval.runner, sfteval.stats")
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_help_is_light_and_lists_commands() -> None:
    code = (
        "import sys\nfrom typer.testing import CliRunner\nfrom sfteval.cli import app\n"
        "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0, r.output\n"
        "assert 'run' in r.output\n"
    )
    loaded = _modules_after(code)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)
