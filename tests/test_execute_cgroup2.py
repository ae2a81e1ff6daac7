"""The sandbox's cgroup v2 path, for real, on a kernel of its own.

The host here mounts cgroup v1 for memory, pids and cpu (a controller bound to a v1
hierarchy cannot be enabled in any v2 hierarchy of the same kernel, and the v1 ones are
busy: other cgroups live in them), so no cgroup2 mount on the host, private mount
namespace or not, can offer memory+pids (/sys/fs/cgroup/unified lists only `hugetlb`).
The test boots a small QEMU guest (KVM where it works, else TCG emulation) of the
distribution's kernel, whose init mounts a pure cgroup2 hierarchy with +memory +pids
+cpu, and runs `tests/cgroup2/check.py` there as root: the fork server must find the
v2 hierarchy, make its cgroup with memory.max / pids.max / cpu.max, and the memory
(tmpfs, memfd), process and CPU probes must be bounded by it.
Skips, with the reason, where QEMU, a kernel image with its initrd, mkfs.ext4/debugfs
or a static busybox are missing (`.ci/install-sandbox-tools.sh` installs them).
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
HERE = Path(__file__).resolve().parent


def _kernel() -> tuple[str, str] | None:
    for vmlinuz in sorted(glob.glob("/boot/vmlinuz-*"), reverse=True):
        initrd = vmlinuz.replace("vmlinuz-", "initrd.img-")
        if os.access(vmlinuz, os.R_OK) and os.path.exists(initrd):
            return vmlinuz, initrd
    return None


def _missing() -> str | None:
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return "the guest is x86_64 Linux"
    for tool in ("qemu-system-x86_64", "mkfs.ext4", "debugfs", "ldd"):
        if shutil.which(tool) is None:
            return f"needs {tool} (.ci/install-sandbox-tools.sh)"
    if not os.path.exists("/bin/busybox"):
        return "needs a static busybox (Debian busybox-static)"
    if _kernel() is None:
        return "needs a kernel image and its initrd in /boot (Debian linux-image-cloud-amd64)"
    return None


def _boot(image: Path, accel: str, timeout_s: int) -> str:
    vmlinuz, initrd = _kernel()  # type: ignore[misc]
    cmd = ["qemu-system-x86_64", "-accel", accel, "-cpu", "host" if accel == "kvm" else "max", "-m", "1024", "-smp", "1",
           "-nographic", "-no-reboot", "-net", "none", "-kernel", vmlinuz, "-initrd", initrd,
           "-drive", f"file={image},format=raw,if=virtio",
           "-append", "console=ttyS0 root=/dev/vda rw init=/init.sh panic=-1 quiet"]  # fmt: skip
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=timeout_s, stdin=subprocess.DEVNULL)
        return proc.stdout[-3000:]
    except subprocess.TimeoutExpired as e:
        return f"timed out after {timeout_s}s: {str(e.stdout or '')[-2000:]}"


def _read(image: Path, path: str) -> str:
    return subprocess.run(["debugfs", "-R", f"cat {path}", str(image)], capture_output=True, text=True).stdout


def test_cgroup_v2_bounds_memory_processes_and_cpu_in_a_guest_kernel(tmp_path: Path) -> None:
    why = _missing()
    if why:
        pytest.skip(why)
    sys.path.insert(0, str(HERE / "cgroup2"))
    from build_image import build

    image = tmp_path / "disk.img"
    build(tmp_path / "stage", image, "/bin/busybox")
    # KVM inside this VM is present but may hang (nested virtualisation): a short try,
    # then emulation, which is slow but a real kernel all the same.
    console = ""
    if os.access("/dev/kvm", os.R_OK | os.W_OK):
        console = _boot(image, "kvm", 30)
    if not _read(image, "/out/result.json").strip():
        console = _boot(image, "tcg", 600)
    text = _read(image, "/out/result.json").strip()
    assert text, f"the guest gave no result; its stderr: {_read(image, '/out/stderr.txt')[-2000:]}; console: {console}"
    out = json.loads(text.splitlines()[-1])
    rec, res = out["record"], out["results"]
    print(json.dumps(out, indent=1))  # shown when an assertion below fails
    assert rec["isolation"] == "root" and rec["cgroups"] == "v2:memory,pids,cpu", out
    assert rec["processes"] == "bounded" and rec["seccomp"] is True, out
    assert out["zygote_cgroup"].startswith("0::/sfteval-zygote-"), out
    # memory_bytes 48 MiB + 64 MiB for the supervisor; max_processes 8 + 6; one CPU
    assert out["limits_seen"] == {"memory.max": str(112 << 20), "pids.max": "14", "cpu.max": "100000 100000"}, out
    assert res["honest"][0] == "passed", out
    # tmpfs and memfd pages, which RLIMIT_AS never sees: memory.max holds them, the program
    # is the OOM killer's victim (not its judge or the fork server, which the old code let
    # die: error(SandboxError)), and the label says so.
    for name in ("shm_fill", "memfd"):
        assert res[name][0] == "killed(memory limit)", (name, res[name])
    assert int(out["memory_events"]["oom_kill"]) >= 2, out  # the limit was hit...
    assert out["memory_peak"] is None or out["memory_peak"] <= 112 << 20, out  # ...and held
    assert res["fork_bomb"][0] == "failed", out  # it got fewer than 200 processes: pids.max held
    # A single-task spinner times out on its own clock where the guest kernel counts run-queue
    # waits (else on the wall clock, with its CPU measured); one with a thread is always on the
    # wall clock, and its CPU is measured because cpu.max bounds the program to one CPU.
    assert res["spinner"][0] == "timeout" and (res["spinner"][3] or res["spinner"][2]) is not None, out
    assert res["spinner_threads"][0] == "timeout" and res["spinner_threads"][2] is not None, out
    assert out["left_over"] == [], out  # the fork server's cgroup is removed after it
