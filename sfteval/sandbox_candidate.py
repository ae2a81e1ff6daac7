"""The candidate's process of one program (read `sfteval.execute` first): PID 1 of its
namespaces, forked by the supervisor (`sandbox_supervisor`). Standard library only,
imported by the fork server before any untrusted code runs.

`run_candidate` mounts the program's /proc and private /tmp and /dev/shm, puts its
pipes on fds 0..4 and closes the rest, then `lock_down` (shared with the judge: the
rlimits, a fresh uid or no capabilities, PDEATHSIG, the seccomp filter), and serves
the judge's calls (`sandbox_judge.serve`).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}
_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND = 2, 4, 8, 0x1000
_PR_SET_PDEATHSIG = 1


def lock_down(limits: Any, setup: Any, uid: int | None, judge: bool, nproc: int | None = None) -> None:
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


def run_candidate(
    job: Any, limits: Any, setup: Any, uid: int | None, host_cwd: str | None,
    scratch_name: str | None, fds: tuple[int, int, int, int],
) -> None:  # fmt: skip
    """The program's process (PID 1 of its namespace): lock down, then serve the judge."""
    import random

    import sandbox_jail as jail

    if setup.mode == "unsafe":  # its process group is what the supervisor kills
        os.setsid()
    # (In a PID namespace there is nothing to gain, and setsid costs ~20 ms here: it
    # makes a scheduler autogroup, and the fork server runs in a cpu cgroup.)
    if setup.mode != "unsafe":
        jail.check(jail.libc.unshare(jail.CLONE_NEWNS | jail.CLONE_NEWIPC | jail.CLONE_NEWUTS), "unshare(mount, ipc, uts)")
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
    # The likely victim of the cgroup's OOM killer: the program, not its judge. (After
    # the program's /proc is mounted: as root the new root has no /proc before it, and
    # this write used to fail silently.)
    try:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("1000")
    except OSError:
        pass
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
    lock_down(limits, setup, uid, judge=False, nproc=nproc)
    import gc

    gc.enable()  # the program's own cycles are collected as usual (the zygote's stay frozen)
    os.environ.clear()
    os.environ.update(_CLEAN_ENV, HOME=cwd, TMPDIR="/tmp" if setup.mode != "unsafe" else cwd)
    sys.argv = ["<program>"]
    random.seed()  # forks of one zygote would otherwise share a random state
    if not setup.processes_bounded:
        _refuse_processes()
    import sandbox_judge

    sandbox_judge.serve(job.program, job.entry_point, 3, 4)


FORK_REFUSED = ("new processes are refused in this sandbox: host uid 0 without a pids cgroup, where nothing "
                "can count them (RLIMIT_NPROC never binds uid 0); run as root with CAP_SYS_ADMIN, as another user, "
                "or give a delegated cgroup v2 folder with pids in $SFTEVAL_CGROUP")


def _refuse_processes() -> None:
    """Where seccomp refuses fork/vfork/clone (see `sandbox_jail.seccomp_filter`), the
    program's own ways to start a process fail with one clear PermissionError instead
    of a bare EAGAIN. Clarity only: the program can undo these, not the filter."""
    import _posixsubprocess

    def refuse(*_: Any, **__: Any) -> Any:
        raise PermissionError(FORK_REFUSED)

    for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "spawnv", "spawnve", "spawnvp", "spawnvpe"):
        if hasattr(os, name):
            setattr(os, name, refuse)
    _posixsubprocess.fork_exec = refuse  # subprocess and multiprocessing's spawn
    if "subprocess" in sys.modules:  # it bound fork_exec when it was imported
        sys.modules["subprocess"]._fork_exec = refuse  # type: ignore[attr-defined]


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
