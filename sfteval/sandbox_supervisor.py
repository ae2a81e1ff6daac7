"""The supervisor of one program (read `sfteval.execute` first); the fork server
(`sandbox_child`) forks it per request. Standard library only, imported by the fork
server before any untrusted code runs.

`supervise` makes the program's namespaces, forks the candidate (`sandbox_candidate`)
as PID 1 of its PID namespace, drops its own privileges and becomes the judge
(`sandbox_judge.verdict`); while it waits, `_Pump` keeps the clock and drains the
program's output. `_label` turns what happened into the one answer (an
execute.ExecResult as a dict), which `_Answer` writes to the fork server before the
process exits (and, by PDEATHSIG, the program's PID 1 with its whole namespace).
"""

from __future__ import annotations

import errno
import json
import os
import select
import signal
import time
from typing import Any

from sandbox_candidate import lock_down, run_candidate
from sandbox_clock import STRETCH, ProgramClock, reached
from sandbox_wire import write_all


def result(outcome: str, error_type: str | None = None, detail: str = "", **common: Any) -> dict[str, Any]:
    """An execute.ExecResult as a dict (the wire format). Text is made valid UTF-8: a
    program's message may hold lone surrogates, which no results file can store."""
    clean = str(detail).encode("utf-8", "backslashreplace").decode("utf-8")
    return {"outcome": outcome, "error_type": error_type, "detail": clean, **common}



def fork_retrying(patience_s: float = 5.0) -> int:
    """fork for the supervisor's candidate: EAGAIN while the previous program's processes,
    which still count in the fork server's pids cgroup, finish dying is waited out, not
    reported as the honest program's error (seen under load: a canonical solution failed)."""
    end = time.monotonic() + patience_s
    while True:
        try:
            return os.fork()
        except OSError as e:  # EAGAIN: the pids cgroup; ENOMEM: the host short of memory
            if e.errno not in (errno.EAGAIN, errno.ENOMEM) or time.monotonic() > end:
                raise
            time.sleep(0.005)



class _Answer:
    """The supervisor's one answer to the zygote (from the judge, or from the clock's
    signal handler); the process exits right after, and so, by PDEATHSIG, does the
    program's PID 1 with its whole namespace."""

    def __init__(self, fd: int, pid: int, isolated: bool) -> None:
        self.fd, self.pid, self.isolated = fd, pid, isolated

    def give(self, body: dict[str, Any]) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})  # one answer only
        try:
            write_all(self.fd, json.dumps(body).encode())
            os.close(self.fd)
        finally:
            if not self.isolated:  # no PID namespace: kill what the program left
                _killpg(self.pid)
            os._exit(0)


def supervise(job: Any, limits: Any, setup: Any, answer_fd: int) -> None:
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
        # Only the PID namespace here (the candidate becomes its PID 1); the candidate
        # makes its own mount and IPC namespaces, so its tmpfs and SysV shm pages die
        # with its last process. (When the judge shared them, a program that filled
        # /dev/shm kept its pages charged after the OOM kill, and the memory cgroup's
        # next victim was its judge: error(SandboxError), not killed(memory limit).)
        jail.check(jail.libc.unshare(jail.CLONE_NEWPID), "unshare(pid)")
    else:
        host_cwd = tempfile.mkdtemp(prefix="sfteval-exec-")
    uid = rng.randrange(1 << 20, 1 << 30) if setup.mode == "root" else None
    ooms = setup.cgroups.oom_kills()
    pid = fork_retrying()
    if pid == 0:
        try:
            for fd in (out_r, err_r, call_w, reply_r, answer_fd):
                os.close(fd)
            run_candidate(job, limits, setup, uid, host_cwd, scratch_name, (out_w, err_w, call_r, reply_w))
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
    clock = ProgramClock(setup.proc_fd, pid, start)  # before the lock-down: it opens /proc files
    # The judge: this process never ran untrusted code; from here on it holds only the
    # test and plain data. It keeps no privilege. As root it takes the program's uid:
    # the kernel checks kill permission for PDEATHSIG, which must reach the program's
    # PID 1 when we exit; the program cannot name us (its PID namespace does not show
    # us) and may not ptrace (seccomp).
    lock_down(limits, setup, uid, judge=True)
    # With a cpu controller the program (candidate and judge) has at most one CPU, so
    # the CPU it used is the part of the clock that load did not take (`_Pump.end`).
    pump = _Pump(limits, start, out_r, err_r, answer, clock, cpu_bounded="cpu" in setup.cgroups.describe())
    # The clock also runs while the (trusted) test computes between calls.
    signal.signal(signal.SIGALRM, lambda *_: pump.expired())
    signal.setitimer(signal.ITIMER_REAL, max(0.001, pump.deadline - time.monotonic()))
    try:
        verdict = sandbox_judge.verdict(job, call_w, reply_r, pump.wait)
    except BaseException as e:  # a bug of ours: say so rather than "no verdict"
        verdict = (b"B", ("JudgeError", repr(e)[:500]))
    status, exited = None, bool(select.select([pidfd], [], [], 0)[0])
    if verdict[0] == b"G" and not exited:
        # The candidate closed its channel: its exit status says why (a signal, the
        # memory cgroup, an exit code). It is exiting; give it the rest of the clock.
        left = pump.deadline - time.monotonic()
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
    or past the output limit it answers (timeout / killed) and ends the process. The
    deadline moves by the time load took from the program (`sandbox_clock`), up to
    `STRETCH` x the timeout of wall clock."""

    def __init__(
        self, limits: Any, start: float, out_r: int, err_r: int, answer: _Answer, clock: ProgramClock, cpu_bounded: bool,
    ) -> None:  # fmt: skip
        self.limits, self.start, self.answer, self.cpu_bounded = limits, start, answer, cpu_bounded
        self.clock = clock
        self.deadline = start + limits.timeout_s
        self.cap = start + STRETCH * limits.timeout_s
        self.fds = [out_r, err_r]
        self.open = {out_r, err_r}
        self.bufs = [bytearray(), bytearray()]
        self.total = 0

    def wait(self, fd: int) -> None:
        self.clock.judge_waits()
        while True:
            left = self.deadline - time.monotonic()
            if left <= 0:
                self.expired()
                continue
            ready = select.select([fd, *self.open], [], [], left)[0]
            for r in ready:
                if r != fd:
                    self._read(r)
            if self.total > self.limits.max_output_bytes:
                self.end("output")
            if fd in ready:
                self.clock.judge_computes()
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

    def expired(self) -> None:
        """At the deadline (from the timer or the wait loop): give back what load took
        and set the timer again, or end with a timeout."""
        now = time.monotonic()
        measured = self.clock.elapsed(now)
        if measured is None:
            self.end("timeout")
        if not reached(measured[0], self.limits.timeout_s) and now < self.cap:
            self.deadline = min(now + self.limits.timeout_s - measured[0], self.cap)
            signal.setitimer(signal.ITIMER_REAL, max(0.001, self.deadline - now))
            return
        self.end("timeout", measured[0])

    def end(self, reason: str, clock: float | None = None) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.drain()
        duration = time.monotonic() - self.start
        cpu = self._cpu_used() if reason == "timeout" and self.cpu_bounded and clock is None else None
        self.answer.give(_label(reason, (b"", None), None, False, duration, self.bufs[0], self.bufs[1], self.limits, cpu,
                                clock))

    def _cpu_used(self) -> float | None:
        """CPU seconds of the timed-out program: the candidate (killed and reaped here,
        with its threads and the children it reaped) plus this judge. Both run in one
        cgroup of one CPU, so this is the part of the wall clock the program had the
        CPU: near the whole timeout, load did not cause the timeout (execute.Sandbox
        then records it without a re-run). Children still alive are not counted (a
        lower figure only makes a re-run more likely)."""
        import resource

        try:
            os.kill(self.answer.pid, signal.SIGKILL)
            ru = os.wait4(self.answer.pid, 0)[2]
        except OSError:
            return None
        me = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime + me.ru_utime + me.ru_stime


def _killpg(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _label(
    reason: str, verdict: tuple[bytes, Any], status: int | None, oom: bool, duration: float,
    out: bytearray, err: bytearray, limits: Any, cpu: float | None = None, clock: float | None = None,
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
        if clock is not None:  # the load-discounted clock (sandbox_clock)
            if reached(clock, limits.timeout_s):
                given = f"; load took {duration - clock:.2f}s of it, given back" if duration - clock >= 0.01 else ""
                text = f"over {limits.timeout_s}s of its own clock ({duration:.2f}s of wall clock{given})"
            else:
                text = (f"wall clock over {STRETCH:g} x {limits.timeout_s}s with {clock:.2f}s of its own clock "
                        f"(load took the rest)")
            return result("timeout", None, text, clock_s=round(clock, 4), **common)
        used = f" (on the CPU for {cpu:.2f}s of it)" if cpu is not None else ""
        return result("timeout", None, f"wall clock over {limits.timeout_s}s{used}", cpu_s=cpu, **common)
    if reason == "output":
        return result("killed", "output limit", f"wrote over {limits.max_output_bytes} bytes", **common)
    tag, data = verdict
    if tag == b"P":
        return result("passed", **common)
    if tag == b"F":
        return result("failed", None, data, **common)
    if tag == b"E":
        name, msg, source = data
        return result("error", name, msg if source == "test" else f"raised by the program: {msg}", **common)
    if tag == b"B":
        return result("error", data[0], data[1], **common)
    if tag == b"G":
        if oom:
            return result("killed", "memory limit", "the program's memory cgroup hit its limit", **common)
        if status is None:
            return result("error", "ClosedChannel", "the program closed its channel to the judge", **common)
        if sig is not None:
            names = {signal.SIGXCPU: "cpu limit", signal.SIGXFSZ: "file size limit"}
            return result("killed", names.get(sig) or signal.Signals(sig).name, f"killed by signal {sig}", **common)
        return result("error", "Exited", f"exited with code {exit_code} before the checks finished", **common)
    return result("error", "JudgeError", "the judge gave no verdict", **common)
