"""The run-folder lock on its own: who holds it, refusal, takeover after kill -9, and
mutual exclusion under a storm of acquire/release (the unlink-while-held race)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sfteval.runlock import LOCK_NAME, RunLock, RunLocked, read_holder


def test_the_lock_file_names_its_holder_and_goes_away_on_release(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r"
    with RunLock(run) as lock:
        holder = read_holder(run / LOCK_NAME)
        assert holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname()
        assert holder.started and lock.previous is None and lock.held
        with pytest.raises(RunLocked) as e:  # a second lock object is a second writer, even in one process
            RunLock(run).acquire()
        assert f"pid {os.getpid()}" in str(e.value) and str(run) in str(e.value)
    assert not (run / LOCK_NAME).exists() and not lock.held


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path: Path) -> None:
    run = tmp_path / "r"
    code = "import sys, time\nfrom sfteval.runlock import RunLock\nRunLock(sys.argv[1]).acquire()\nprint('ok', flush=True)\ntime.sleep(60)\n"
    child = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ok"
        with pytest.raises(RunLocked) as e:
            RunLock(run).acquire()
        assert e.value.holder.pid == child.pid
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    with RunLock(run) as lock:
        assert lock.previous is not None and lock.previous.pid == child.pid  # whose lock it took over
        assert read_holder(run / LOCK_NAME).pid == os.getpid()


def test_a_garbage_record_without_a_live_holder_does_not_block(tmp_path: Path) -> None:
    (tmp_path / LOCK_NAME).write_text("{not json")
    with RunLock(tmp_path):
        pass  # not held by anyone: taken, the bad record replaced
    assert read_holder(tmp_path / LOCK_NAME) is None


STORM = """
import os, sys, time
from sfteval.runlock import RunLock, RunLocked
run, count, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
got = 0
while got < rounds:
    try:
        lock = RunLock(run).acquire()
    except RunLocked:
        continue
    fd = os.open(count, os.O_RDWR | os.O_CREAT)
    n = int(os.pread(fd, 16, 0) or b"0")
    os.pwrite(fd, str(n + 1).ljust(16).encode(), 0)
    if n != 0:
        print("OVERLAP", flush=True)
    time.sleep(0.001)
    os.pwrite(fd, str(n).ljust(16).encode(), 0)
    os.close(fd)
    lock.release()
    got += 1
print("done", flush=True)
"""


def test_no_two_holders_at_once_under_a_storm_of_acquire_and_release(tmp_path: Path) -> None:
    run, count = tmp_path / "r", tmp_path / "count"
    procs = [subprocess.Popen([sys.executable, "-c", STORM, str(run), str(count), "40"], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(o.strip() == "done" for o in outs), outs  # no "OVERLAP"
    assert json.loads(count.read_text()) == 0


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, op: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)  # what some FUSE mounts answer
    with RunLock(tmp_path / "r") as lock:
        assert lock.held
    assert "does not support locks" in capsys.readouterr().err
