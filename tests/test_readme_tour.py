"""The README's tour, run line by line from the README itself, offline.

The bash block under "## A tour" is read from README.md and run in one bash script, with
these documented departures only, to fit CI on a CPU:
- the block's `BASE=` and `CONFIG=` lines get a tiny model served as the hub id
  `tiny-org/tiny-llama` from a hub cache laid out on disk (HF_HUB_OFFLINE=1), and `tiny`
  (the trainer config sized for it); GSM8K and MMLU are small copies in the same cache
  as `openai/gsm8k` and `cais/mmlu`;
- `sfteval run` / `sfteval compare` lines get `--limit 3 --backend hf` appended
  (HumanEval's 164 problems at 512 new tokens take minutes per evaluation here);
- `sfteval gate` may exit 0, 1, 2 (uninformative: a random tiny model scores 0) or 3; the
  script goes on;
- `sfteval dashboard` is started with `--port` (a free one) appended, polled until it
  answers, then stopped.
Everything else runs as written, in order, in a fresh folder.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from hubcache import add_model, add_snapshot, commit_sha

ROOT = Path(__file__).resolve().parents[1]
# Trains twice and evaluates four times: several minutes on 2 idle cores, much more when loaded.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2700)]


def tour_lines() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    m = re.search(r"^## A tour\n\n```bash\n(.*?)^```", text, re.S | re.M)
    assert m, "README has no '## A tour' bash block"
    return [ln for ln in m.group(1).splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def _script(lines: list[str]) -> tuple[str, str]:
    out, dashboard = ["set -euo pipefail"], ""
    for ln in lines:
        cmd = ln.split("  #")[0].rstrip()  # drop trailing comments
        if cmd.startswith("BASE="):
            cmd = "BASE=tiny-org/tiny-llama"
        elif cmd.startswith("CONFIG="):
            cmd = "CONFIG=tiny"
        elif cmd.startswith(("sfteval run ", "sfteval compare ")):
            cmd += " --limit 3 --backend hf"
        elif cmd.startswith("sfteval gate "):
            cmd = f"rc=0; {cmd} || rc=$?; echo gate-exit=$rc; test $rc -ne 2 -o -f reports/gate/summary.md"
        elif cmd.startswith("sfteval dashboard "):
            dashboard = cmd
            continue
        out.append(f"echo '+ {cmd}' >&2")
        out.append(cmd)
    return "\n".join(out) + "\n", dashboard


def _data(tmp: Path) -> None:
    rows = [{"instruction": f"Write the word for number {i}.", "output": f"number {i}"} for i in range(40)]
    (tmp / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    val = [{"instruction": f"Write the word for number {i}.", "output": f"number {i}"} for i in range(100, 110)]
    (tmp / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in val))


def _hub(cache: Path, model: Path, src: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    add_model(cache, "tiny-org/tiny-llama", model, commit=commit_sha("tour-model"))
    src.mkdir()

    def table(name: str, rows: list[dict]) -> Path:
        pq.write_table(pa.Table.from_pylist(rows), src / name)
        return src / name

    math = [{"question": f"What is {i} plus {i}?", "answer": f"{i}+{i}={2 * i}\n#### {2 * i}"} for i in range(12)]
    mc = [{"question": f"{i} + 1 = ?", "subject": "arithmetic", "choices": [str(i + 1), "0", "7", "9"], "answer": 0}
          for i in range(10)]
    add_snapshot(cache, "openai/gsm8k", {"main/test-00000-of-00001.parquet": table("g-test.parquet", math[:4]),
                                         "main/train-00000-of-00001.parquet": table("g-train.parquet", math[4:])},
                 commit=commit_sha("gsm8k"), repo_type="dataset")
    add_snapshot(cache, "cais/mmlu", {"all/test-00000-of-00001.parquet": table("m-test.parquet", mc[:5]),
                                      "all/dev-00000-of-00001.parquet": table("m-dev.parquet", mc[5:])},
                 commit=commit_sha("mmlu"), repo_type="dataset")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_readme_tour_runs_as_written(tiny_model: Path, tmp_path: Path) -> None:
    lines = tour_lines()
    assert any(ln.startswith("accelerate launch -m sfteval.train") for ln in lines)
    script, dashboard = _script(lines)
    assert dashboard, "the tour has no dashboard line"
    _data(tmp_path)
    _hub(tmp_path / "hub", tiny_model, tmp_path / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"), HF_HOME=str(tmp_path / "hf-home"),
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}")
    (tmp_path / "tour.sh").write_text(script)
    r = subprocess.run(["bash", "tour.sh"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=2400)
    assert r.returncode == 0, f"{r.stdout[-4000:]}\n{r.stderr[-6000:]}"
    assert (tmp_path / "reports" / "compare" / "tour" / "comparison.json").is_file()
    assert (tmp_path / "reports" / "compare" / "tour" / "report.html").is_file()
    base_runs = list((tmp_path / "reports" / "runs").glob("tiny-llama-*/results.json"))
    assert base_runs and json.loads(base_runs[0].read_text())["model"]["fingerprint"]["hub"]["repo_id"] == "tiny-org/tiny-llama"
    assert "gate-exit=" in r.stdout

    port = _free_port()
    proc = subprocess.Popen(["bash", "-c", f"exec {dashboard} --port {port}"], cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
                assert time.monotonic() < deadline, "the dashboard did not answer"
                time.sleep(1)
    finally:
        proc.terminate()
        proc.wait(timeout=60)
