"""The fork server side of `sfteval.execute` (read that module's docstring first).

Run as a script (`python -I sandbox_child.py --zygote CONFIG_JSON`), never imported by
the caller's process; standard library only (plus its siblings `sandbox_wire`,
`sandbox_judge`, `sandbox_jail`, imported before any untrusted code runs). Protocol on
stdin/stdout: frames of a 4-byte little-endian length and JSON. The first frame the
zygote writes describes its setup ({"ok", "error", "cgroups", "seccomp", ...}); then
each request is {"job": {...}, "limits": {...}} (fields of execute.Job and
execute.Limits) and each answer the fields of ExecResult.

Per request the zygote forks a supervisor, which makes the program's namespaces, forks
the candidate as PID 1 of its PID namespace, drops its own privileges and becomes the
judge (while it waits it keeps the clock and drains the output), labels the outcome
and answers. The zygote is the child subreaper of the programs, whose PID 1 dies with
its supervisor (PDEATHSIG), and reaps them.
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import struct
import sys
import time
from types import SimpleNamespace as NS
from typing import Any

_HERE = os.path.dirname(os.path.abspath(__file__))


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf



def _frame(fd: int, obj: Any) -> None:
    from sandbox_wire import write_all

    body = json.dumps(obj).encode()
    write_all(fd, struct.pack("<I", len(body)) + body)



class _Setup:
    """What the zygote built once; every program of this zygote runs inside it."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import sandbox_cgroups
        import sandbox_jail as jail

        self.mode: str = cfg["mode"]  # "root" | "userns" | "unsafe"
        # Our /proc, kept for the supervisors' program clocks (sandbox_clock): the root
        # built below has none. Every candidate closes it before it runs anything.
        try:
            self.proc_fd: int | None = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            self.proc_fd = None
        if self.mode != "unsafe":
            # Never the memory cgroup's OOM victim while a program is there to kill (needs
            # CAP_SYS_RESOURCE: as root; elsewhere the programs' 1000 still comes first).
            # The supervisors (judges) inherit it.
            try:
                with open("/proc/self/oom_score_adj", "w") as f:
                    f.write("-1000")
            except OSError:
                pass
        if cfg.get("cpu") is not None:
            os.sched_setaffinity(0, {cfg["cpu"]})
        self.host_uid = os.getuid()
        self.processes_bounded = True
        self.cgroups = sandbox_cgroups.Cgroups()
        self.scratch_fd: int | None = None
        self.seccomp: Any = None
        self.mapped = True
        self.scratch: str | None = None
        self.cgroup_paths: list[str] = []
        if self.mode == "unsafe":
            return
        if cfg.get("cgroups", True):
            self.cgroups.open_dirs(cfg.get("cgroup"))
            if self.cgroups.version:
                lim = cfg["limits"]
                # One program at a time: the program, plus us, its supervisor and judge
                # (and a supervisor still exiting) in the process count.
                self.cgroup_paths = self.cgroups.create(
                    f"sfteval-zygote-{os.getpid()}", lim["memory_bytes"] + (64 << 20), lim["max_processes"] + 6, 1.0)
        flags = jail.CLONE_NEWNS | jail.CLONE_NEWNET
        if self.mode == "root":
            jail.check(jail.libc.unshare(flags), "unshare(mount, net)")
        else:
            scratch = self.scratch = _host_scratch()
            try:
                jail.enter_user_namespace(flags)
            except OSError:
                os.rmdir(scratch)  # nobody else knows it exists
                raise
            self.mapped = jail.mapped()
            if self.mapped:
                os.rmdir(scratch)
                self.scratch = None
            else:  # no file can be made on our own tmpfs: host folders instead
                os.mkdir(f"{scratch}/root", 0o755)
                os.mkdir(f"{scratch}/progs", 0o700)
                self.scratch_fd = os.open(f"{scratch}/progs", os.O_RDONLY | os.O_DIRECTORY)
                self.root_dir = f"{scratch}/root"
        jail.build_root(cfg["allow"], cfg["masks"], getattr(self, "root_dir", None), proc=self.mode == "userns",
                        scratch=None if self.mapped else f"{scratch}/progs")
        # RLIMIT_NPROC never binds host uid 0 (the kernel exempts root's user): without a
        # pids cgroup, a capability-less root in a user namespace gets no new processes.
        self.processes_bounded = self.mode == "root" or "pids" in self.cgroups.describe() or self.host_uid != 0
        program = jail.seccomp_filter(block_memory=not self.cgroups.version, block_processes=not self.processes_bounded)
        self.seccomp = jail.Seccomp(program) if program else None
        jail.libc.capset, jail.libc.setns  # noqa: B018  (ctypes looks them up once, here)

    def describe(self) -> dict[str, Any]:
        return {
            "cgroups": self.cgroups.describe(),
            "cgroup_note": self.cgroups.error,
            "seccomp": self.seccomp is not None,
            "processes": "bounded" if self.processes_bounded else "none (fork refused)",
            "uid_mapped": self.mapped,
            "tmp": "tmpfs" if self.mapped else "host folder",
            "scratch": self.scratch if not self.mapped else None,
            "cgroup_paths": self.cgroup_paths,
        }


def _reap(setup: _Setup, supervisors: set[int], block: bool = False) -> None:
    """Reap finished supervisors and the programs they orphaned (we are the child
    subreaper: a program's PID 1 outlives its supervisor by a moment). A supervisor's
    host-folder /tmp goes with it."""
    while True:
        try:
            pid, _ = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        if pid in supervisors:
            supervisors.discard(pid)
            if setup.scratch_fd is not None:
                import shutil

                shutil.rmtree(f"sfteval-{pid}", dir_fd=setup.scratch_fd, ignore_errors=True)


def _fork_when_possible(setup: _Setup, supervisors: set[int], patience_s: float = 5.0) -> int:
    """fork, waiting while the last program's processes (which count in our pids
    cgroup) finish dying; -1 if they never do."""
    end = time.monotonic() + patience_s
    while True:
        _reap(setup, supervisors)
        try:
            return os.fork()
        except OSError as e:  # EAGAIN: the pids cgroup; ENOMEM: the host short of memory
            if e.errno not in (errno.EAGAIN, errno.ENOMEM) or time.monotonic() > end:
                return -1
            time.sleep(0.005)



def _host_scratch() -> str:
    import tempfile

    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="sfteval-scratch-", dir=base)


def _zygote_main(cfg: dict[str, Any]) -> None:
    sys.executable = os.path.realpath(sys.executable)  # a venv's bin/ is not in the sandbox
    sys.path.insert(0, _HERE)
    import sandbox_candidate, sandbox_cgroups, sandbox_clock, sandbox_jail, sandbox_judge, sandbox_supervisor, sandbox_wire  # noqa: F401,E401
    from sandbox_supervisor import result, supervise
    from sandbox_wire import write_all
    sys.path.remove(_HERE)
    # Pre-import what test programs commonly use, so each fork starts warm.
    import bisect, collections, copy, decimal, fractions, functools, hashlib, heapq  # noqa: F401,E401
    import itertools, math, random, re, statistics, string, typing  # noqa: F401,E401
    import ctypes, fcntl, resource, shutil, tempfile  # noqa: F401,E401  (used after fork)

    # The first compile() in a process builds the ~120 AST node types (PyAST_Check):
    # once here, not in every judge and every candidate.
    exec(compile("def _warm(x):\n    return [x]\n", "<warm>", "exec"), {})

    proto_in, proto_out = os.dup(0), os.dup(1)
    try:
        setup = _Setup(cfg)
        _frame(proto_out, {"ok": True, **setup.describe()})
    except OSError as e:
        _frame(proto_out, {"ok": False, "error": str(e)})
        return
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    import gc

    # Forked children would otherwise copy every page the collector touches (its
    # headers live in the objects): freeze what exists, and collect nothing here.
    gc.collect()
    gc.freeze()
    gc.disable()
    supervisors: set[int] = set()  # answered, maybe still exiting
    import sandbox_jail as jail

    jail.libc.prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphaned programs come to us
    while True:
        head = _read_exact(proto_in, 4)
        if not head:
            _reap(setup, supervisors, block=True)
            return
        req = json.loads(_read_exact(proto_in, struct.unpack("<I", head)[0]))
        limits = NS(**req["limits"])
        res_r, res_w = os.pipe()
        pid = _fork_when_possible(setup, supervisors)
        if pid < 0:  # out of processes: an answer, not a dead zygote
            os.close(res_r)
            os.close(res_w)
            _frame(proto_out, result("error", "SandboxError", "fork: no process left in the cgroup"))
            continue
        if pid == 0:
            try:
                os.close(proto_in)
                os.close(proto_out)
                os.close(res_r)
                supervise(NS(**req["job"]), limits, setup, res_w)
            except BaseException as e:  # a supervisor bug must still produce an answer
                import traceback

                where = traceback.extract_tb(e.__traceback__)[-1]  # which call of ours failed
                write_all(res_w, json.dumps(result("error", "SandboxError", f"supervisor: {e!r} at {where.name}: {where.line}")).encode())
            os._exit(0)
        os.close(res_w)
        out = bytearray()
        backstop = time.monotonic() + limits.timeout_s + 30
        while True:
            left = backstop - time.monotonic()
            if left <= 0 or not select.select([res_r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                out = bytearray(json.dumps(result("error", "SandboxError", "supervisor hung")).encode())
                break
            chunk = os.read(res_r, 1 << 16)
            if not chunk:
                break
            out += chunk
        os.close(res_r)
        supervisors.add(pid)
        _reap(setup, supervisors)
        if not out:
            out = bytearray(json.dumps(result("error", "SandboxError", "no answer")).encode())
        write_all(proto_out, struct.pack("<I", len(out)) + bytes(out))


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote_main(json.loads(sys.argv[2]))
