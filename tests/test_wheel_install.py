"""`pip install .` (not editable) into a fresh venv: the package is self-contained.

What this proves, and how it avoids a multi-GB download: the fresh venv gets sfteval from
a real non-editable `pip install` of a copy of the source tree (no access to the checkout
afterwards: it runs from another folder), while its third-party dependencies (torch,
transformers, streamlit, ...) come from this interpreter's site-packages through a `.pth`
line. A plain directory line in a .pth file is not itself scanned for .pth files, so the
dev venv's editable-install hook never runs there and `import sfteval` can only find the
installed copy (asserted). Then, from that install: the catalog and its offline items,
the dashboard app, the trainer (`python -m sfteval.train`, `accelerate launch -m
sfteval.train`), no top-level `train` module, `sfteval run --suite offline` on the tiny
model, `sfteval dashboard --help`, and the demo pipeline at a tiny size (the full
`sfteval demo --fast` runs in tests/test_demo.py; here only its files must be found).
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # a venv, a pip install and a few fresh processes: about a minute or two


def _run(cmd: list[str], cwd: Path, timeout: int = 600, env: dict[str, str] | None = None) -> str:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, f"{cmd} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r.stdout


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        if (ROOT / name).is_file():
            shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "sfteval", src / "sfteval", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(ROOT / "train", src / "train", ignore=shutil.ignore_patterns("__pycache__"))  # must NOT ship
    env_dir = tmp / "venv"
    # No pip/setuptools of its own: ensurepip's bundled setuptools predates the PEP 639
    # license field in pyproject.toml. This interpreter's pip installs into it (--python).
    _run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], cwd=tmp)
    (purelib,) = (env_dir / "lib").glob("python*/site-packages")
    # Dependencies from this interpreter (no download); see the module docstring for why the
    # dev venv's editable sfteval cannot leak in.
    (purelib / "_sfteval_test_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    py = env_dir / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-build-isolation", "--no-index",
          "-q", str(src)], cwd=tmp)
    shutil.rmtree(src)  # nothing may depend on the source tree any more
    return env_dir


def _clean_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.pop("SFTEVAL_BENCHMARKS", None)  # the installed catalog, nothing else
    return {**env, "HF_HUB_OFFLINE": "1"}


def test_installed_package_is_self_contained(venv: Path, tmp_path: Path) -> None:
    py = str(venv / "bin" / "python")
    env = _clean_env(tmp_path)
    where = _run([py, "-c", "import sfteval, sfteval.benchmarks as b; print(sfteval.__file__); print(b.benchmarks_dir())"],
                 cwd=tmp_path, env=env).split()
    assert where[0].startswith(str(venv)) and where[1].startswith(str(venv)), where
    (purelib,) = (venv / "lib").glob("python*/site-packages")
    assert not (purelib / "train").exists(), "a top-level 'train' package was installed"
    pkg = purelib / "sfteval"
    for rel in ("catalog/offline_gsm8k.toml", "catalog/suites/offline.toml", "catalog/suites/demo.toml",
                "catalog/data/offline/gsm8k_test.jsonl", "dashboard/app.py", "train/__main__.py"):
        assert (pkg / rel).is_file(), rel
    assert "--eval-data" in _run([py, "-m", "sfteval.train", "--help"], cwd=tmp_path, env=env)
    # accelerate's console script lives in the dev venv; run its module under the fresh interpreter.
    launched = _run([py, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "1", "-m", "sfteval.train",
                     "--help"], cwd=tmp_path, env=env)
    assert "--eval-data" in launched  # the trainer's own help, reached through accelerate


def test_installed_cli_runs_the_offline_suite_and_the_dashboard_help(venv: Path, tmp_path: Path, tiny_model: Path) -> None:
    exe = str(venv / "bin" / "sfteval")
    env = _clean_env(tmp_path)
    assert "--reports" in _run([exe, "dashboard", "--help"], cwd=tmp_path, env=env)
    out = _run([exe, "run", str(tiny_model), "--suite", "offline", "--limit", "3", "--backend", "hf",
                "--out", str(tmp_path / "reports")], cwd=tmp_path, env=env)
    assert "offline_gsm8k" in out and "offline_mmlu" in out and "offline_heldout" in out


def test_installed_demo_pipeline_finds_its_files(venv: Path, tmp_path: Path) -> None:
    """The demo at a tiny size (its own settings type), from the installed package."""
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from sfteval.demo.pipeline import DemoSettings, PretrainSettings, SftSettings, run_demo\n"
        "from sfteval.demo.corpus import TaskSizes\n"
        "from sfteval.tinymodel import TinySpec\n"
        "s = DemoSettings(corpus_docs=600, eval_docs=40, backend='hf', resamples=200,\n"
        "    spec=TinySpec(vocab_size=512, hidden_size=128, num_layers=1, num_heads=2, intermediate_size=256),\n"
        "    pretrain=PretrainSettings(steps=4, batch_size=4, seq_len=64, warmup_steps=1),\n"
        "    sizes=TaskSizes(code_test=4, math_test=6, sft_train=24, sft_heldout=6),\n"
        "    sft=SftSettings(steps=4, save_steps=2, warmup_steps=1))\n"
        "summary = run_demo(Path(sys.argv[1]), s, say=lambda line: print(line, file=sys.stderr))\n"
        "print('DEMO-OK')\n"
    )
    out = _run([str(venv / "bin" / "python"), "-c", code, str(tmp_path / "demo")], cwd=tmp_path,
               env=_clean_env(tmp_path), timeout=900)
    assert "DEMO-OK" in out
    assert list((tmp_path / "demo").rglob("report.html"))
