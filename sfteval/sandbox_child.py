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

import json
import os
import select
import signal
import struct
import sys
import time
from types import SimpleNamespace as NS
from typing import Any

_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND = 2, 4, 8, 0x1000
_PR_SET_PDEATHSIG = 1
_HERE = os.path.dirname(os.path.abspath(__file__))


def _result(outcome: str, error_type: str | None = None, detail: str = "", **common: Any) -> dict[str, Any]:
    """An execute.ExecResult as a dict (the wire format). Text is made valid UTF-8: a
    program's message may hold lone surrogates, which no results file can store."""
    clean = str(detail).encode("utf-8", "backslashreplace").decode("utf-8")
    return {"outcome": outcome, "error_type": error_type, "detail": clean, **common}


def _read_exact(fd: int, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return b""
        buf += chunk
    return buf


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _frame(fd: int, obj: Any) -> None:
    body = json.dumps(obj).encode()
    _write_all(fd, struct.pack("<I", len(body)) + body)


class _Setup:
    """What the zygote built once; every program of this zygote runs inside it."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        import sandbox_jail as jail

        self.mode: str = cfg["mode"]  # "root" | "userns" | "unsafe"
        if cfg.get("cpu") is not None:
            os.sched_setaffinity(0, {cfg["cpu"]})
        self.host_uid = os.getuid()
        self.processes_bounded = True
        self.cgroups = jail.Cgroups()
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
        except BlockingIOError:
            if time.monotonic() > end:
                return -1
            time.sleep(0.005)


def _fork_retrying(patience_s: float = 5.0) -> int:
    """fork for the supervisor's candidate: EAGAIN while the previous program's processes,
    which still count in the fork server's pids cgroup, finish dying is waited out, not
    reported as the honest program's error (seen under load: a canonical solution failed)."""
    end = time.monotonic() + patience_s
    while True:
        try:
            return os.fork()
        except BlockingIOError:
            if time.monotonic() > end:
                raise
            time.sleep(0.005)


def _host_scratch() -> str:
    import tempfile

    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return tempfile.mkdtemp(prefix="sfteval-scratch-", dir=base)


def _zygote_main(cfg: dict[str, Any]) -> None:
    sys.executable = os.path.realpath(sys.executable)  # a venv's bin/ is not in the sandbox
    sys.path.insert(0, _HERE)
    import sandbox_jail, sandbox_judge, sandbox_wire  # noqa: F401,E401
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
            _frame(proto_out, _result("error", "SandboxError", "fork: no process left in the cgroup"))
            continue
        if pid == 0:
            try:
                os.close(proto_in)
                os.close(proto_out)
                os.close(res_r)
                _supervise(NS(**req["job"]), limits, setup, res_w)
            except BaseException as e:  # a supervisor bug must still produce an answer
                _write_all(res_w, json.dumps(_result("error", "SandboxError", f"supervisor: {e!r}")).encode())
            os._exit(0)
        os.close(res_w)
        out = bytearray()
        backstop = time.monotonic() + limits.timeout_s + 30
        while True:
            left = backstop - time.monotonic()
            if left <= 0 or not select.select([res_r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                out = bytearray(json.dumps(_result("error", "SandboxError", "supervisor hung")).encode())
                break
            chunk = os.read(res_r, 1 << 16)
            if not chunk:
                break
            out += chunk
        os.close(res_r)
        supervisors.add(pid)
        _reap(setup, supervisors)
        if not out:
            out = bytearray(json.dumps(_result("error", "SandboxError", "no answer")).encode())
        _write_all(proto_out, struct.pack("<I", len(out)) + bytes(out))


class _Answer:
    """The supervisor's one answer to the zygote (from the judge, or from the clock's
    signal handler); the process exits right after, and so, by PDEATHSIG, does the
    program's PID 1 with its whole namespace."""

    def __init__(self, fd: int, pid: int, isolated: bool) -> None:
        self.fd, self.pid, self.isolated = fd, pid, isolated

    def give(self, body: dict[str, Any]) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # one answer only
        try:
            _write_all(self.fd, json.dumps(body).encode())
            os.close(self.fd)
        finally:
            if not self.isolated:  # no PID namespace: kill what the program left
                _killpg(self.pid)
            os._exit(0)


def _supervise(job: Any, limits: Any, setup: _Setup, answer_fd: int) -> None:
    """Runs in a fresh child of the zygote: start the program, then be its judge while
    a thread keeps the clock and drains the output. Never returns."""
    import random
    import tempfile

    import sandbox_jail as jail
    import sandbox_judge

    isolated = setup.mode != "unsafe"
    rng = random.SystemRandom()
    call_r, call_w = os.pipe()  # judge -> candidate
    reply_r, reply_w = os.pipe()  # candidate -> judge
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    start = time.monotonic()
    host_cwd = scratch_name = None
    if setup.scratch_fd is not None:
        scratch_name = f"sfteval-{os.getpid()}"
        os.mkdir(scratch_name, 0o700, dir_fd=setup.scratch_fd)
        for sub in ("tmp", "shm"):
            os.mkdir(f"{scratch_name}/{sub}", 0o1777, dir_fd=setup.scratch_fd)
    if isolated:
        jail.check(jail.libc.unshare(jail.CLONE_NEWPID | jail.CLONE_NEWNS | jail.CLONE_NEWIPC | jail.CLONE_NEWUTS), "unshare")
    else:
        host_cwd = tempfile.mkdtemp(prefix="sfteval-exec-")
    uid = rng.randrange(1 << 20, 1 << 30) if setup.mode == "root" else None
    ooms = setup.cgroups.oom_kills()
    pid = _fork_retrying()
    if pid == 0:
        try:
            for fd in (out_r, err_r, call_w, reply_r, answer_fd):
                os.close(fd)
            _candidate(job, limits, setup, uid, host_cwd, scratch_name, (out_w, err_w, call_r, reply_w))
        except BaseException as e:
            try:
                import sandbox_wire as wire

                wire.send(reply_w, b"X", wire.encode(("SandboxSetup", repr(e)[:500])))
            finally:
                os._exit(126)
        os._exit(127)
    for fd in (out_w, err_w, call_r, reply_w):
        os.close(fd)
    pidfd = os.pidfd_open(pid)
    answer = _Answer(answer_fd, pid, isolated)
    # The judge: this process never ran untrusted code; from here on it holds only the
    # test and plain data. It keeps no privilege. As root it takes the program's uid:
    # the kernel checks kill permission for PDEATHSIG, which must reach the program's
    # PID 1 when we exit; the program cannot name us (its PID namespace does not show
    # us) and may not ptrace (seccomp).
    _lock_down(limits, setup, uid, judge=True)
    pump = _Pump(limits, start, out_r, err_r, answer)
    # The clock also runs while the (trusted) test computes between calls.
    signal.signal(signal.SIGALRM, lambda *_: pump.end("timeout"))
    signal.setitimer(signal.ITIMER_REAL, max(0.001, start + limits.timeout_s - time.monotonic()))
    try:
        verdict = sandbox_judge.verdict(job, call_w, reply_r, pump.wait)
    except BaseException as e:  # a bug of ours: say so rather than "no verdict"
        verdict = (b"B", ("JudgeError", repr(e)[:500]))
    status, exited = None, bool(select.select([pidfd], [], [], 0)[0])
    if verdict[0] == b"G" and not exited:
        # The candidate closed its channel: its exit status says why (a signal, the
        # memory cgroup, an exit code). It is exiting; give it the rest of the clock.
        left = start + limits.timeout_s - time.monotonic()
        exited = bool(select.select([pidfd], [], [], max(0.0, min(1.0, left)))[0])
    signal.setitimer(signal.ITIMER_REAL, 0)
    if exited:
        status = os.waitpid(pid, 0)[1]
    pump.drain()
    oom = setup.cgroups.oom_kills() > ooms
    duration = time.monotonic() - start
    answer.give(_label("", verdict, status, oom, duration, pump.bufs[0], pump.bufs[1], limits))


class _Pump:
    """The clock and the output while the judge waits for the candidate: at the deadline
    or past the output limit it answers (timeout / killed) and ends the process."""

    def __init__(self, limits: Any, start: float, out_r: int, err_r: int, answer: _Answer) -> None:
        self.limits, self.start, self.answer = limits, start, answer
        self.fds = [out_r, err_r]
        self.open = {out_r, err_r}
        self.bufs = [bytearray(), bytearray()]
        self.total = 0

    def wait(self, fd: int) -> None:
        deadline = self.start + self.limits.timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                self.end("timeout")
            ready = select.select([fd, *self.open], [], [], left)[0]
            for r in ready:
                if r != fd:
                    self._read(r)
            if self.total > self.limits.max_output_bytes:
                self.end("output")
            if fd in ready:
                return

    def _read(self, fd: int) -> None:
        data = os.read(fd, 1 << 16)
        if not data:
            self.open.discard(fd)
            return
        self.total += len(data)
        buf = self.bufs[self.fds.index(fd)]
        buf += data[: max(0, self.limits.keep_output_bytes - len(buf))]

    def drain(self) -> None:
        """What the program wrote before the verdict (it flushes before each reply)."""
        for fd in list(self.open):
            while fd in self.open and select.select([fd], [], [], 0)[0]:
                self._read(fd)

    def end(self, reason: str) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.drain()
        duration = time.monotonic() - self.start
        self.answer.give(_label(reason, (b"", None), None, False, duration, self.bufs[0], self.bufs[1], self.limits))


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _label(
    reason: str, verdict: tuple[bytes, Any], status: int | None, oom: bool, duration: float,
    out: bytearray, err: bytearray, limits: Any,
) -> dict[str, Any]:  # fmt: skip
    code = os.waitstatus_to_exitcode(status) if status is not None else None
    exit_code, sig = (code, None) if code is None or code >= 0 else (None, -code)
    common = dict(
        duration_s=round(duration, 4),
        exit_code=exit_code,
        signal=sig,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
    )
    if reason == "timeout":
        return _result("timeout", None, f"wall clock over {limits.timeout_s}s", **common)
    if reason == "output":
        return _result("killed", "output limit", f"wrote over {limits.max_output_bytes} bytes", **common)
    tag, data = verdict
    if tag == b"P":
        return _result("passed", **common)
    if tag == b"F":
        return _result("failed", None, data, **common)
    if tag == b"E":
        name, msg, source = data
        return _result("error", name, msg if source == "test" else f"raised by the program: {msg}", **common)
    if tag == b"B":
        return _result("error", data[0], data[1], **common)
    if tag == b"G":
        if oom:
            return _result("killed", "memory limit", "the program's memory cgroup hit its limit", **common)
        if status is None:
            return _result("error", "ClosedChannel", "the program closed its channel to the judge", **common)
        if sig is not None:
            names = {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "file size limit"}
            return _result("killed", names.get(sig) or signal.Signals(sig).name, f"killed by signal {sig}", **common)
        return _result("error", "Exited", f"exited with code {exit_code} before the checks finished", **common)
    return _result("error", "JudgeError", "the judge gave no verdict", **common)


def _lock_down(limits: Any, setup: _Setup, uid: int | None, judge: bool, nproc: int | None = None) -> None:
    """Limits, privileges and the syscall filter, for the judge or the candidate."""
    import resource

    import sandbox_jail as jail

    cpu = int(limits.timeout_s) + 1
    for res, val in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, 0 if judge else limits.max_file_bytes),
        *([(resource.RLIMIT_NPROC, nproc)] if nproc is not None else []),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, val if isinstance(val, tuple) else (val, val))
    if judge:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
    if setup.mode == "unsafe":
        if not judge:
            import sandbox_jail as jail

            jail.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        return
    if uid is not None:
        jail.drop_bounding_set()
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)  # drops every capability
        jail.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    else:
        jail.drop_capabilities()
        jail.libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if setup.seccomp is not None:
        setup.seccomp.install()


def _candidate(
    job: Any, limits: Any, setup: _Setup, uid: int | None, host_cwd: str | None,
    scratch_name: str | None, fds: tuple[int, int, int, int],
) -> None:  # fmt: skip
    """The program's process (PID 1 of its namespace): lock down, then serve the judge."""
    import random

    import sandbox_jail as jail

    if setup.mode == "unsafe":  # its process group is what the supervisor kills
        os.setsid()
    # (In a PID namespace there is nothing to gain, and setsid costs ~20 ms here: it
    # makes a scheduler autogroup, and the fork server runs in a cpu cgroup.)
    try:  # the likely victim of the cgroup's OOM killer: the program, not its judge
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
    if setup.mode != "unsafe":
        jail.mount(b"proc", "/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
        opts = f"size={limits.tmpfs_bytes},mode=1777".encode()
        for sub, target in (("tmp", "/tmp"), ("shm", "/dev/shm")):
            if scratch_name:
                jail.mount(f"{jail.SCRATCH}/{scratch_name}/{sub}".encode(), target, None, _MS_BIND)
            else:
                jail.mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, opts)
        if scratch_name:
            jail.check(jail.libc.umount2(jail.SCRATCH.encode(), jail.MNT_DETACH), "detach the scratch folder")
        cwd = "/tmp/work"
        os.mkdir(cwd, 0o700)
        if uid is not None:
            os.chown(cwd, uid, uid)
    else:
        assert host_cwd is not None
        cwd = host_cwd
    os.chdir(cwd)
    # Our pipes to 0..4 (stdin /dev/null, stdout, stderr, calls in, replies out), then
    # close everything else.
    out_w, err_w, call_r, reply_w = fds
    high = [_dup_high(fd) for fd in (os.open(os.devnull, os.O_RDONLY), out_w, err_w, call_r, reply_w)]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(5, 1 << 16)
    # RLIMIT_NPROC: a fresh uid per program (and its supervisor) as root; in a user
    # namespace the count is of this zygote's namespace (zygote, supervisors, program).
    nproc = limits.max_processes + (1 if uid is not None else 4)  # + its supervisor, which shares the uid
    if setup.mode == "unsafe" and os.getuid() != 0:
        nproc += _tasks_of(os.getuid())
    _lock_down(limits, setup, uid, judge=False, nproc=nproc)
    import gc

    gc.enable()  # the program's own cycles are collected as usual (the zygote's stay frozen)
    os.environ.clear()
    os.environ.update(_CLEAN_ENV, HOME=cwd, TMPDIR="/tmp" if setup.mode != "unsafe" else cwd)
    sys.argv = ["<program>"]
    random.seed()  # forks of one zygote would otherwise share a random state
    import sandbox_judge

    sandbox_judge.serve(job.program, job.entry_point, 3, 4)


def _tasks_of(uid: int) -> int:
    """Threads owned by `uid` (what RLIMIT_NPROC counts)."""
    total = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/status") as f:
                    fields = dict(line.split(":", 1) for line in f if ":" in line)
                if int(fields["Uid"].split()[0]) == uid:
                    total += int(fields["Threads"])
            except (OSError, KeyError, ValueError):
                pass
    return total


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, 11)


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote_main(json.loads(sys.argv[2]))
