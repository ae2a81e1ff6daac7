"""The walls of the sandbox (read `sfteval.execute` first). Standard library only;
loaded by the fork server before any untrusted code runs.

- `build_root`: a new root file system on a tmpfs from an allowlist, entered with
  pivot_root: the interpreter binary and its shared libraries, the standard library
  with every site-packages / dist-packages folder masked by an empty tmpfs, the system
  library folders, a minimal /dev (null, zero, full, random, urandom; no /dev/pts, no
  /dev/ptmx: no ptys), empty /tmp, /proc and /etc mount points, and the read-only paths
  a benchmark declares. Nothing else of the host exists in it: no project, no homes, no
  run folders, no /run sockets, no /sys.
- `seccomp_filter`: a classic-BPF program (x86_64) that makes the syscalls a test never
  needs fail with EPERM: mount and the new mount API, pivot_root, chroot, unshare, setns,
  clone with any CLONE_NEW* flag (so no new user namespaces), bpf, keyctl/add_key/
  request_key, io_uring, perf_event_open, ptrace, process_vm_*, kcmp, pidfd_getfd,
  userfaultfd, module and kexec loading, swapon, reboot, name_to_handle_at/
  open_by_handle_at, fanotify; `socket`/`socketpair` for any family but AF_UNIX; clone3
  answers ENOSYS (glibc then uses clone, whose flags the filter can see). Where no memory
  cgroup bounds the program it also refuses memfd_create, memfd_secret and shmget, the
  memory that RLIMIT_AS does not count; where neither a pids cgroup nor RLIMIT_NPROC
  counts its processes (host uid 0 in a user namespace: the kernel never applies
  RLIMIT_NPROC to uid 0), it refuses new processes (fork, vfork, clone without
  CLONE_THREAD; threads stay, bounded by RLIMIT_AS). Other architectures: no filter
  (recorded). Why hand-built BPF and not libseccomp: its Python binding is not on PyPI
  (Debian's python3-seccomp serves the system interpreter, not a venv's), and the
  fork server must stay standard-library only; the program is ~70 instructions.
- `drop_capabilities`: empty bounding, permitted, effective and inheritable sets.
- cgroups: `sandbox_cgroups`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import struct
from typing import Any

CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x02000000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWTIME = 0x10000000, 0x20000000, 0x40000000, 0x00000080
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REC, MS_PRIVATE, MS_BIND = 1, 2, 4, 8, 0x4000, 1 << 18, 0x1000
MNT_DETACH = 2
SCRATCH = "/.sfteval-scratch"
_SYS_PIVOT_ROOT, _SYS_MOUNT_SETATTR, _AT_RECURSIVE = 155, 442, 0x8000
_MOUNT_ATTR_RDONLY, _MOUNT_ATTR_NOSUID = 0x1, 0x2
PR_SET_NO_NEW_PRIVS, PR_CAPBSET_DROP, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 24, 22, 2

libc = ctypes.CDLL(None, use_errno=True)


def check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def mount(src: bytes | None, target: str, fstype: bytes | None, flags: int, data: bytes | None = None) -> None:
    check(libc.mount(src, target.encode(), fstype, flags, data), f"mount {target}")


def write_file(path: str, text: str, dir_fd: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY, dir_fd=dir_fd)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def enter_user_namespace(extra_flags: int) -> None:
    """unshare a user namespace (plus `extra_flags`), mapping our uid/gid to 0 where the
    kernel lets us (mapping host uid 0 needs CAP_SETFCAP: then it stays unmapped)."""
    uid, gid = os.getuid(), os.getgid()
    check(libc.unshare(CLONE_NEWUSER | extra_flags), "unshare(user)")
    for path, text in (("/proc/self/setgroups", "deny"), ("/proc/self/gid_map", f"0 {gid} 1"), ("/proc/self/uid_map", f"0 {uid} 1")):
        try:
            write_file(path, text)
        except OSError:
            pass


def mapped() -> bool:
    """False when our uid has no mapping (files cannot be created on our own tmpfs)."""
    return os.getuid() != 65534


# -- the root file system ----------------------------------------------------------

def _mkdirs(root: str, path: str) -> str:
    target = root + path
    os.makedirs(target, mode=0o755, exist_ok=True)
    return target


def _bind(root: str, path: str) -> None:
    real = os.path.realpath(path)
    if os.path.isdir(real):
        target = _mkdirs(root, path)
    else:
        _mkdirs(root, os.path.dirname(path))
        target = root + path
        if not os.path.exists(target):
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    mount(real.encode(), target, None, MS_BIND | MS_REC)


def build_root(allow: list[str], masks: list[str], root_dir: str | None = None, proc: bool = False,
               scratch: str | None = None) -> None:
    """Replace this mount namespace's root by one built from `allow` (read-only), with
    `masks` (site-packages folders) hidden. Call in a fresh mount namespace. The root is
    a tmpfs on /tmp, or `root_dir` (a host folder: where our uid has no mapping, no
    file can be made on a tmpfs of ours). `proc`: bind the current /proc (a user
    namespace may mount a new proc only where one is fully visible)."""
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    if root_dir is None:
        # A mount point of ours that no allowed path lies under (binds read from the host).
        root = next(d for d in ("/tmp", "/mnt", "/media", "/srv", "/boot") if os.path.isdir(d) and not any(
            p == d or p.startswith(d + "/") for p in allow))
        mount(b"tmpfs", root, b"tmpfs", MS_NOSUID, b"mode=0755,size=4m")
    else:
        root = root_dir
        mount(root.encode(), root, None, MS_BIND)
    for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(top):  # merged /usr: keep the symlinks, bind their targets
            os.symlink(os.readlink(top), root + top)
    seen: set[str] = set()
    for path in allow:
        if path in seen or not os.path.exists(path) or os.path.islink(path):
            continue
        seen.add(path)
        _bind(root, path)
    for path in masks:
        if os.path.isdir(root + path):
            mount(b"tmpfs", root + path, b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0555,size=4k")
    for d in ("/tmp", "/proc", "/etc", "/dev"):
        _mkdirs(root, d)
    if proc:
        mount(b"/proc", root + "/proc", None, MS_BIND | MS_REC)
    for dev in ("null", "zero", "full", "random", "urandom"):
        os.close(os.open(f"{root}/dev/{dev}", os.O_CREAT | os.O_WRONLY, 0o666))
        mount(f"/dev/{dev}".encode(), f"{root}/dev/{dev}", None, MS_BIND)
    os.mkdir(root + "/dev/shm", 0o755)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    if scratch:  # host folders for per-program /tmp: bound here, detached by each program
        os.mkdir(root + SCRATCH, 0o700)
        mount(scratch.encode(), root + SCRATCH, None, MS_BIND)
    os.chdir(root)
    check(libc.syscall(ctypes.c_long(_SYS_PIVOT_ROOT), b".", b"."), "pivot_root")
    check(libc.umount2(b".", MNT_DETACH), "detach the old root")
    os.chdir("/")
    set_readonly("/")
    if scratch:
        set_readonly(SCRATCH, clear=True, recursive=False)


def set_readonly(path: str, clear: bool = False, recursive: bool = True) -> None:
    """Read-only + nosuid for every mount under `path`, in one call (Linux >= 5.12);
    `clear`: make `path` writable again."""
    attr = (ctypes.c_uint64 * 4)(*((0, _MOUNT_ATTR_RDONLY) if clear else (_MOUNT_ATTR_RDONLY | _MOUNT_ATTR_NOSUID, 0)), 0, 0)
    rc = libc.syscall(
        ctypes.c_long(_SYS_MOUNT_SETATTR), ctypes.c_int(-100), ctypes.c_char_p(path.encode()),
        ctypes.c_uint(_AT_RECURSIVE if recursive else 0), ctypes.byref(attr), ctypes.c_size_t(ctypes.sizeof(attr)),
    )  # fmt: skip
    check(rc, f"mount_setattr({path}, read-only)")


# -- capabilities and seccomp ------------------------------------------------------

def drop_bounding_set() -> None:
    """No capability can come back through execve (needs CAP_SETPCAP: do it first)."""
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break


_CAP_HEADER, _CAP_DATA = ctypes.c_uint32 * 2, ctypes.c_uint32 * 6


def drop_capabilities() -> None:
    drop_bounding_set()
    header = _CAP_HEADER(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3, this thread
    check(libc.capset(ctypes.byref(header), ctypes.byref(_CAP_DATA())), "capset")


_X86_64 = {
    "mount": 165, "umount2": 166, "pivot_root": 155, "chroot": 161, "swapon": 167, "swapoff": 168,
    "reboot": 169, "sethostname": 170, "setdomainname": 171, "iopl": 172, "ioperm": 173,
    "init_module": 175, "delete_module": 176, "quotactl": 179, "acct": 163, "ptrace": 101, "syslog": 103,
    "vhangup": 153, "lookup_dcookie": 212, "kexec_load": 246, "add_key": 248, "request_key": 249,
    "keyctl": 250, "unshare": 272, "perf_event_open": 298, "fanotify_init": 300,
    "name_to_handle_at": 303, "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310,
    "process_vm_writev": 311, "kcmp": 312, "finit_module": 313, "kexec_file_load": 320, "bpf": 321,
    "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsconfig": 431, "fsmount": 432, "fspick": 433,
    "pidfd_getfd": 438, "process_madvise": 440, "mount_setattr": 442, "quotactl_fd": 443,
}
_X86_64_MEMORY = {"memfd_create": 319, "memfd_secret": 447, "shmget": 29}
_CLONE, _CLONE3, _SOCKET, _SOCKETPAIR = 56, 435, 41, 53
_CLONE_THREAD = 0x00010000
_NS_FLAGS = CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWTIME
_AUDIT_ARCH_X86_64 = 0xC000003E
_RET_ALLOW, _RET_ERRNO, _RET_KILL = 0x7FFF0000, 0x00050000, 0x80000000
_LD_W_ABS, _JEQ_K, _JGE_K, _JSET_K, _RET_K = 0x20, 0x15, 0x35, 0x45, 0x06


def seccomp_filter(block_memory: bool, block_processes: bool = False) -> bytes | None:
    """The BPF program (bytes of sock_filter), or None where we have no syscall table.
    `block_processes`: no fork/vfork/clone of a new process (threads stay allowed, and
    RLIMIT_AS bounds their stacks): for where nothing else counts processes."""
    if platform.machine() != "x86_64":
        return None
    blocked = dict(_X86_64, **(_X86_64_MEMORY if block_memory else {}), **({"fork": 57, "vfork": 58} if block_processes else {}))
    # (code, jt, jf, k) with symbolic jump targets resolved below.
    prog: list[tuple[int, Any, Any, int]] = [
        (_LD_W_ABS, 0, 0, 4),  # seccomp_data.arch
        (_JEQ_K, 0, "kill", _AUDIT_ARCH_X86_64),
        (_LD_W_ABS, 0, 0, 0),  # seccomp_data.nr
        (_JGE_K, "eperm", 0, 0x40000000),  # the x32 ABI
    ]
    for nr in sorted(blocked.values()):
        prog.append((_JEQ_K, "eperm", 0, nr))
    prog += [
        (_JEQ_K, "enosys", 0, _CLONE3),
        (_JEQ_K, "clone", 0, _CLONE),
        (_JEQ_K, "socket", 0, _SOCKET),
        (_JEQ_K, "socket", 0, _SOCKETPAIR),
        (_RET_K, 0, 0, _RET_ALLOW),
    ]
    labels = {"clone": len(prog)}
    prog += [(_LD_W_ABS, 0, 0, 16), (_JSET_K, "eperm", 0, _NS_FLAGS)]  # args[0] low word
    if block_processes:
        prog += [(_JSET_K, 0, "eagain", _CLONE_THREAD)]
    prog += [(_RET_K, 0, 0, _RET_ALLOW)]
    labels["socket"] = len(prog)
    prog += [(_LD_W_ABS, 0, 0, 16), (_JEQ_K, "allow", 0, 1), (_RET_K, 0, 0, _RET_ERRNO | errno.EAFNOSUPPORT)]
    for name, ret in (("allow", _RET_ALLOW), ("eperm", _RET_ERRNO | errno.EPERM), ("enosys", _RET_ERRNO | errno.ENOSYS),
                      ("eagain", _RET_ERRNO | errno.EAGAIN), ("kill", _RET_KILL)):  # fmt: skip
        labels[name] = len(prog)
        prog.append((_RET_K, 0, 0, ret))
    out = bytearray()
    for i, (code, jt, jf, k) in enumerate(prog):
        jt = labels[jt] - i - 1 if isinstance(jt, str) else jt
        jf = labels[jf] - i - 1 if isinstance(jf, str) else jf
        assert 0 <= jt < 256 and 0 <= jf < 256
        out += struct.pack("<HBBI", code, jt, jf, k)
    return bytes(out)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Seccomp:
    """A filter made ready once in the fork server (a ctypes class per program would
    cost more than the rest of the lock-down)."""

    def __init__(self, program: bytes) -> None:
        self.buf = ctypes.create_string_buffer(program, len(program))
        self.fprog = _SockFprog(len(program) // 8, ctypes.cast(self.buf, ctypes.c_void_p))
        self.prctl = libc.prctl

    def install(self) -> None:
        check(self.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
        check(self.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.byref(self.fprog), 0, 0), "seccomp")
