"""One writer per run folder: an exclusive lock held while `sfteval run` writes.

`RunLock(run_dir)` takes `flock(LOCK_EX | LOCK_NB)` on `<run_dir>/.lock` and writes who
holds it (pid, host, start time, command line) into that file. A second writer gets a
`RunLocked` error naming the holder's pid and host. The kernel drops a flock when its
process dies, however it dies (kill -9 included), so a lock left by a killed run is
simply free: the next writer takes it over and says whose it was (`previous`).

Releasing unlinks the lock file. Unlink-while-held is the classic flock race (a waiter
that opened the old inode would lock a file nobody else can see), so after every
acquisition the lock checks that the path still names the inode it locked, and retries
if not.

Covered: processes on one machine, and NFS clients where the kernel maps flock onto
NFS byte-range locks (Linux >= 2.6.12 with a lock manager). Not covered: file systems
without working locks (some FUSE mounts): there the run goes on with a warning, and a
second writer is caught only afterwards, by the duplicate-id refusal of every reader.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from sfteval.errors import SftevalError

LOCK_NAME = ".lock"
NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)  # flock unsupported where the folder lives


@dataclass(frozen=True)
class Holder:
    """Who holds (or last held) a run folder's lock, as recorded in the lock file."""

    pid: int | None
    host: str
    started: str
    argv: tuple[str, ...] = ()

    def describe(self) -> str:
        pid = "an unknown pid" if self.pid is None else f"pid {self.pid}"
        return f"{pid} on {self.host or 'an unknown host'}" + (f", since {self.started}" if self.started else "")


class RunLocked(SftevalError):
    """Another live process is writing this run folder."""

    def __init__(self, path: Path, holder: Holder) -> None:
        self.holder = holder
        super().__init__(
            f"run folder is being written by another process ({holder.describe()})",
            path=str(path.parent),
            hint="wait for it to finish (re-run then to get its results), or stop it; "
            "a lock left by a killed process is taken over automatically",
        )


def read_holder(lock_path: str | os.PathLike[str]) -> Holder | None:
    """The holder recorded in a lock file; None when absent or unreadable (mid-write)."""
    try:
        raw = json.loads(Path(lock_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    pid = raw.get("pid")
    return Holder(
        pid=pid if isinstance(pid, int) else None,
        host=str(raw.get("host") or ""),
        started=str(raw.get("started") or ""),
        argv=tuple(str(a) for a in raw.get("argv") or ()),
    )


class RunLock:
    """Exclusive writer lock on a run folder; a context manager. Creates the folder."""

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self.previous: Holder | None = None  # a dead writer's record, when we took its lock over
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        for _ in range(50):  # each retry means the file was unlinked under us: rare
            self.run_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except FileNotFoundError:  # the folder was removed between mkdir and open
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno in NO_LOCKS:  # the file system cannot lock: go on, and say so
                    sys.stderr.write(f"warning: {self.path}: this file system does not support locks "
                                     f"({os.strerror(e.errno)}); nothing stops a second writer here\n")
                    self._fd = fd
                    self._record(fd)
                    return self
                os.close(fd)
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                holder = read_holder(self.path) or Holder(None, "", "")
                raise RunLocked(self.path, holder) from None
            if not self._same_inode(fd):  # released and unlinked by its holder meanwhile
                os.close(fd)
                continue
            self.previous = read_holder(self.path)  # a record left behind: its writer died
            self._fd = fd
            self._record(fd)
            if self.previous is not None:
                sys.stderr.write(f"note: {self.run_dir}: took over the lock of a writer that stopped "
                                 f"({self.previous.describe()}); resuming\n")
            return self
        raise SftevalError("could not take the run folder's lock (it kept being replaced)", path=str(self.path))

    def _same_inode(self, fd: int) -> bool:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return False
        mine = os.fstat(fd)
        return (st.st_dev, st.st_ino) == (mine.st_dev, mine.st_ino)

    def _record(self, fd: int) -> None:
        doc: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": sys.argv,
        }
        data = (json.dumps(doc) + "\n").encode("utf-8")
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)

    def release(self) -> None:
        """Unlink the lock file and drop the lock (in that order: see the module doc)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            fd, self._fd = self._fd, None
            os.close(fd)  # closing the last descriptor drops the flock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
