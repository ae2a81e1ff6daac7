"""Run folders survive resume, a second writer and bad files (#15).

Each test here reproduces a failure seen before the run folder had a lock and a
progress record: a finished run re-run rewrote results.json (backend info shrank to the
name, timings reset, created reset); a resumed run kept only the last session's
timings; a run that failed before its first sample left a folder readers took for a
run; two writers appended duplicate ids that readers silently accepted.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from sfteval.config import EngineSettings, RunConfig
from sfteval.errors import SftevalError
from sfteval.fileio import read_json, read_jsonl
from sfteval.runlock import RunLocked
from sfteval.runner import execute_run

GSM = Path(__file__).resolve().parents[1] / "sfteval" / "catalog" / "data" / "offline" / "gsm8k_test.jsonl"


def _cfg(model: Path, out: Path, **kw) -> RunConfig:
    base = dict(checkpoint=str(model), benchmarks=("offline_gsm8k",), backend="hf", out=str(out), limit=10,
                engine=EngineSettings(batch_size=4))
    base.update(kw)
    return RunConfig(**base)


def _replay_cfg(tmp_path: Path, n: int = 6) -> RunConfig:
    outs = tmp_path / "outs.jsonl"
    outs.write_text("".join(json.dumps({"id": str(i), "output": f"#### {i}"}) + "\n" for i in range(n)))
    return RunConfig(replay=str(outs), label="ext", benchmarks=("offline_gsm8k",), limit=n, out=str(tmp_path / "out"))


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _next_second() -> None:
    """created/finished have a resolution of one second: make a reset visible."""
    time.sleep(1.1)


class NoModel:
    """Stands in for a backend class when nothing may be generated."""

    chunk_size = 4

    def __init__(self, *a, **k) -> None:
        raise AssertionError("a backend was opened although every sample is on disk")


# ----------------------------------------------------------------------------- resume


def test_resuming_a_finished_run_leaves_results_json_byte_identical(tiny_model: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import sfteval.runner as runner

    run = execute_run(_cfg(tiny_model, tmp_path, limit=4))
    before = (run / "results.json").read_bytes()
    doc = json.loads(before)
    assert doc["backend"]["dtype"] and doc["benchmarks"]["offline_gsm8k"]["timing"]["generate_s"] > 0
    _next_second()
    monkeypatch.setattr(runner, "backend_class", lambda name: NoModel)
    assert execute_run(_cfg(tiny_model, tmp_path, limit=4)) == run
    assert (run / "results.json").read_bytes() == before
    assert sorted(p.name for p in run.iterdir()) == ["results.json", "samples"]  # no lock, no progress left


def test_resuming_an_unfinished_run_keeps_created_backend_and_adds_timings(tiny_model: Path, tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.backends.hf import HFBackend

    spent = {"generate": 0.0, "load": 0.0}
    real_gen, real_init = HFBackend.generate, HFBackend.__init__
    calls = {"n": 0}

    def timed_init(self, *a, **k):
        t = time.perf_counter()
        real_init(self, *a, **k)
        spent["load"] += time.perf_counter() - t

    def dying(self, reqs, progress=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed during the second chunk
        t = time.perf_counter()
        out = real_gen(self, reqs, progress)
        spent["generate"] += time.perf_counter() - t
        return out

    monkeypatch.setattr(HFBackend, "chunk_size", 4)
    monkeypatch.setattr(HFBackend, "__init__", timed_init)
    monkeypatch.setattr(HFBackend, "generate", dying)
    first_start = _now().replace(microsecond=0)
    with pytest.raises(KeyboardInterrupt):
        execute_run(_cfg(tiny_model, tmp_path))
    first = dict(spent)
    assert first["generate"] > 0
    _next_second()
    resume_start = _now().replace(microsecond=0)
    calls["n"] = -100  # no more deaths
    doc = read_json(execute_run(_cfg(tiny_model, tmp_path)) / "results.json")
    created = datetime.fromisoformat(doc["created"])
    assert first_start <= created < resume_start  # the first session's, not the resume's
    timing = doc["benchmarks"]["offline_gsm8k"]["timing"]
    both = spent["generate"]  # both sessions' generation, as measured around the backend
    assert both > first["generate"]
    assert 0.8 * both <= timing["generate_s"] <= 1.25 * both + 0.5, (timing, spent)
    assert timing["model_load_s"] == pytest.approx(spent["load"], rel=0.25, abs=0.3)  # two loads, summed
    assert [s["new_samples"] for s in doc["sessions"]] == [{"offline_gsm8k": 4}, {"offline_gsm8k": 6}]
    assert doc["backend"]["name"] == "hf" and doc["backend"]["dtype"]


def test_a_run_killed_after_its_last_sample_keeps_the_backend_info(tiny_model: Path, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The resume generates nothing, so it opens no backend: the info must come from the
    session that did (before: {"name": "hf"} only, and 'backend.dtype differs' in compare)."""
    import sfteval.runner as runner
    from sfteval.backends.hf import HFBackend

    infos: list[dict] = []
    real_info = HFBackend.info
    monkeypatch.setattr(HFBackend, "info", lambda self: infos.append(real_info(self)) or infos[-1])
    real_write = runner.write_results

    def die_on_results(run_dir, results):  # the runner's one writer of results.json
        raise KeyboardInterrupt  # killed between the last sample and results.json

    monkeypatch.setattr(runner, "write_results", die_on_results)
    with pytest.raises(KeyboardInterrupt):
        execute_run(_cfg(tiny_model, tmp_path, limit=4))
    run_dir = next((tmp_path / "runs").iterdir())
    progress = read_json(run_dir / "progress.json")
    _next_second()
    monkeypatch.setattr(runner, "write_results", real_write)
    monkeypatch.setattr(runner, "backend_class", lambda name: NoModel)
    doc = read_json(execute_run(_cfg(tiny_model, tmp_path, limit=4)) / "results.json")
    assert {k: v for k, v in doc["backend"].items() if k != "selected_because"} == infos[0]
    assert doc["created"] == progress["created"]
    gen = doc["benchmarks"]["offline_gsm8k"]["timing"]["generate_s"]
    assert gen == pytest.approx(progress["timings"]["offline_gsm8k"]["generate_s"], abs=0.01) and gen > 0
    assert not (run_dir / "progress.json").exists()


# ----------------------------------------------------------------------------- failures leave no run


def test_a_run_failing_before_its_first_sample_leaves_no_run_folder(tiny_model: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from sfteval.backends.hf import HFBackend
    from sfteval.runfolder import list_runs

    def broken(self, *a, **k):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(HFBackend, "__init__", broken)
    with pytest.raises(RuntimeError):
        execute_run(_cfg(tiny_model, tmp_path))
    runs = tmp_path / "runs"
    assert not runs.exists() or list(runs.iterdir()) == []
    assert list_runs(tmp_path) == []


def test_compare_refuses_an_unfinished_run_folder_instead_of_evaluating_it(tmp_path: Path) -> None:
    """A folder a run left behind (killed: a stale lock, maybe samples) is not a checkpoint."""
    run = tmp_path / "runs" / "x-00000000"
    (run / "samples").mkdir(parents=True)
    (run / "samples" / "offline_gsm8k.jsonl").write_text('{"id": "0", "output": "1"}\n')
    (run / ".lock").write_text(json.dumps({"pid": 1, "host": "h", "started": "t"}))
    r = subprocess.run([sys.executable, "-m", "sfteval.cli", "compare", str(run), str(run), "--reports", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert str(run) in r.stderr and "unfinished run" in r.stderr and "evaluating checkpoint" not in r.stderr


# ----------------------------------------------------------------------------- duplicates


def test_duplicate_sample_ids_are_refused_with_file_and_line(tmp_path: Path) -> None:
    from sfteval.compare import load_run
    from sfteval.runfolder import read_samples, samples_file

    cfg = _replay_cfg(tmp_path)
    run = execute_run(cfg)
    path = run / "samples" / "offline_gsm8k.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines) + lines[2])  # what a second writer appended
    where = f"{path}:{len(lines) + 1}"
    for read in (lambda: read_samples(samples_file(run, "offline_gsm8k")), lambda: load_run(run), lambda: execute_run(cfg)):
        with pytest.raises(SftevalError) as e:
            read()
        assert where in str(e.value) and "'2' appears twice" in str(e.value)


# ----------------------------------------------------------------------------- the lock


def _hold_lock(run_dir: Path) -> subprocess.Popen:
    code = ("import sys, time\nfrom sfteval.runlock import RunLock\nRunLock(sys.argv[1]).acquire()\n"
            "print('locked', flush=True)\ntime.sleep(120)\n")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run_dir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_a_dead_ones_lock_is_taken_over(tmp_path: Path) -> None:
    cfg = _replay_cfg(tmp_path)
    run = execute_run(cfg)
    before = (run / "results.json").read_bytes()
    holder = _hold_lock(run)
    try:
        with pytest.raises(RunLocked) as e:
            execute_run(cfg)
        assert f"pid {holder.pid}" in str(e.value) and str(run) in str(e.value)
        assert e.value.exit_code == 2
    finally:
        os.kill(holder.pid, signal.SIGKILL)  # dies holding it: the kernel drops the flock
        holder.wait()
    assert (run / ".lock").exists()  # its record is still there ...
    assert execute_run(cfg) == run  # ... and the next writer takes over
    assert (run / "results.json").read_bytes() == before and not (run / ".lock").exists()


# ----------------------------------------------------------------------------- explicit readers


@pytest.mark.parametrize(("command", "damage"), [
    ("compare", '{"schema": "sfteval.run/1", "benchmarks": {"offline_gsm8k": {"n": 3'),  # torn mid-write
    ("gate", '{"schema": "sfteval.run/1", "model": "not an object", "benchmarks": {}}'),
    ("report", '{"schema": "sfteval.run/1", "benchmarks": {"offline_gsm8k": 7}}'),
])
def test_commands_given_a_corrupt_run_name_the_file_and_exit_2(tmp_path: Path, command: str, damage: str) -> None:
    import shutil

    good = execute_run(_replay_cfg(tmp_path))
    bad = tmp_path / "bad-run"
    shutil.copytree(good, bad)
    (bad / "results.json").write_text(damage)
    rules = tmp_path / "gate.toml"
    rules.write_text('[min]\n"offline_gsm8k" = 0.1\n')
    args = {"compare": [str(bad), str(good), "--reports", str(tmp_path)], "gate": [str(bad), "--rules", str(rules)],
            "report": [str(bad)]}[command]
    r = subprocess.run([sys.executable, "-m", "sfteval.cli", command, *args], capture_output=True, text=True)
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith(f"error: {bad / 'results.json'}") and "Traceback" not in r.stderr, r.stderr
