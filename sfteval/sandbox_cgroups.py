"""Cgroups for the sandbox (read `sfteval.execute` first). Standard library only;
loaded by the fork server before any untrusted code runs, and by the host
(`remove_cgroups`) after a fork server is gone.

`Cgroups`: a cgroup per fork server, which runs one program at a time, so it bounds
  each program (memory incl. tmpfs/shmem/memfd pages, pids, cpu); on cgroup v1
  (memory, pids, cpu hierarchies) or a cgroup v2 folder this process may write (root,
  a delegated subtree, or $SFTEVAL_CGROUP naming one).

Not covered: a cgroup per program (moving a task costs an RCU grace period, tens of ms
per program); cgroup v1 without a memory hierarchy we may write (then no cgroup at all).
"""

from __future__ import annotations

import os


def write_file(path: str, text: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


class Cgroups:
    """Where per-program cgroups can be made. `open_dirs` runs before pivot_root: the
    directory fds stay valid after the host's /sys is gone."""

    def __init__(self) -> None:
        self.version = 0
        self.dirs: dict[str, int] = {}  # controller (or "v2") -> dir fd of the base
        self.paths: dict[str, str] = {}
        self.name = ""
        self.error = ""
        self.cpu_v2 = False

    def describe(self) -> str:
        """"none", or "v1:memory,pids,cpu" / "v2:..." (the controllers bounding each program)."""
        if not self.version:
            return "none"
        ctls = sorted(self.dirs) if self.version == 1 else ["memory", "pids"] + (["cpu"] if self.cpu_v2 else [])
        return f"v{self.version}:{','.join(ctls)}"

    def open_dirs(self, base: str | None = None) -> None:
        own = {}
        try:
            with open("/proc/self/cgroup") as f:
                for line in f:
                    _, names, path = line.rstrip("\n").split(":", 2)
                    for n in names.split(",") if names else [""]:
                        own[n] = path
        except OSError as e:
            self.error = str(e)
            return
        mounts = _cgroup_mounts()
        base_v2 = base or (mounts.get("") and mounts[""] + own.get("", "/"))
        if base_v2 and self._try_v2(base_v2):
            return
        dirs = {}
        for ctl in ("memory", "pids", "cpu"):
            if ctl not in mounts or ctl not in own:
                continue
            base = mounts[ctl] + own[ctl]
            if _probe_mkdir(base):
                dirs[ctl] = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
                self.paths[ctl] = base
        if "memory" in dirs:  # without pids, RLIMIT_NPROC still counts the processes
            self.version, self.dirs = 1, dirs
        else:
            for fd in dirs.values():
                os.close(fd)
            self.error = "no writable memory cgroup (v1) and no delegated cgroup v2 folder with memory+pids"

    def _try_v2(self, base: str) -> bool:
        try:
            with open(os.path.join(base, "cgroup.subtree_control")) as f:
                enabled = set(f.read().split())
        except OSError:
            return False
        if not {"memory", "pids"} <= enabled or not _probe_mkdir(base):
            return False
        self.version, self.dirs, self.paths = 2, {"v2": os.open(base, os.O_RDONLY | os.O_DIRECTORY)}, {"v2": base}
        self.cpu_v2 = "cpu" in enabled
        return True

    def create(self, name: str, memory: int, pids: int, cpus: float) -> list[str]:
        """Make cgroups `name` under each base and move this process into them (once
        per fork server: moving a task costs an RCU grace period, tens of ms, too slow
        per program). Returns their paths, for the host to remove."""
        settings = (
            {"v2": [("memory.max", memory), ("memory.swap.max", 0), ("pids.max", pids)]
             + ([("cpu.max", f"{int(cpus * 100000)} 100000")] if self.cpu_v2 else [])}
            if self.version == 2
            else {"memory": [("memory.limit_in_bytes", memory), ("memory.memsw.limit_in_bytes", memory)],
                  "pids": [("pids.max", pids)],
                  "cpu": [("cpu.cfs_period_us", 100000), ("cpu.cfs_quota_us", int(cpus * 100000))]}
        )  # fmt: skip
        self.name = name
        for ctl, dfd in self.dirs.items():
            _sweep(dfd)
            os.mkdir(name, 0o755, dir_fd=dfd)
            for key, value in settings.get(ctl, []):
                try:
                    write_file(f"{name}/{key}", str(value), dir_fd=dfd)
                except FileNotFoundError:  # memsw / swap files exist only with swap accounting
                    pass
            write_file(f"{name}/cgroup.procs", "0", dir_fd=dfd)
        return [self.paths[ctl] + "/" + name for ctl in self.dirs]

    def oom_kills(self) -> int:
        """OOM kills in our cgroup so far (compare before and after a program)."""
        dfd = self.dirs.get("v2", self.dirs.get("memory"))
        if dfd is None:
            return 0
        fname = "memory.events" if self.version == 2 else "memory.oom_control"
        try:
            fd = os.open(f"{self.name}/{fname}", os.O_RDONLY, dir_fd=dfd)
            try:
                text = os.read(fd, 4096).decode()
            finally:
                os.close(fd)
        except OSError:
            return 0
        fields = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(fields.get("oom_kill", "0"))


def _sweep(dfd: int) -> None:
    """Remove the empty cgroups of fork servers that are gone (one killed before its
    host could clean up). rmdir fails on a cgroup that still holds a process."""
    for entry in os.listdir(dfd):
        if entry.startswith("sfteval-zygote-") and entry[15:].isdigit():
            try:
                os.kill(int(entry[15:]), 0)
            except ProcessLookupError:
                try:
                    os.rmdir(entry, dir_fd=dfd)
                except OSError:
                    pass
            except OSError:
                pass


def remove_cgroups(paths: list[str], timeout_s: float = 5.0) -> None:
    """rmdir, retrying while the last killed processes finish exiting (host side)."""
    import time

    end = time.monotonic() + timeout_s
    for path in paths:
        while True:
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                if time.monotonic() > end:
                    break
                time.sleep(0.01)


def _cgroup_mounts() -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                pre, _, post = line.partition(" - ")
                fstype, _, opts = (post.split() + ["", "", ""])[:3]
                point = pre.split()[4]
                if fstype == "cgroup2":
                    out.setdefault("", point)
                elif fstype == "cgroup":
                    for o in opts.split(","):
                        if o in ("memory", "pids", "cpu"):
                            out[o] = point
    except OSError:
        pass
    return out


def _probe_mkdir(base: str) -> bool:
    probe = os.path.join(base, f"sfteval-probe-{os.getpid()}")
    try:
        os.mkdir(probe)
        os.rmdir(probe)
        return True
    except OSError:
        return False
