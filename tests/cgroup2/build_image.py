"""Build the guest disk of tests/test_execute_cgroup2.py: an ext4 image (mkfs.ext4 -d)
holding this interpreter with its standard library (no site-packages), the shared
libraries it and its extension modules load, a static busybox, the sfteval package and
the check script (the interpreter and libraries at the paths they have on the host; sfteval
and the script under /checkout). Run by the test, on the host."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GUEST_REPO = "/checkout"  # where the guest finds sfteval and the check script


def _copy(src: str, stage: Path) -> None:
    real = os.path.realpath(src)
    dest = stage / real.lstrip("/")
    dest.parent.mkdir(parents=True, exist_ok=True)
    if os.path.isdir(real):
        shutil.copytree(real, dest, dirs_exist_ok=True, symlinks=True,
                        ignore=shutil.ignore_patterns("site-packages", "test", "tests", "idlelib", "tkinter", "turtledemo", "ensurepip"))  # fmt: skip
    else:
        shutil.copy2(real, dest)
    if real != os.path.abspath(src):  # keep the name it was asked by (lib64/ld-linux...)
        link = stage / os.path.abspath(src).lstrip("/")
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(real)


def _libs(binaries: list[str]) -> set[str]:
    out: set[str] = set()
    for b in binaries:
        text = subprocess.run(["ldd", b], capture_output=True, text=True).stdout
        for line in text.splitlines():
            parts = line.split()
            for p in parts:
                if p.startswith("/"):
                    out.add(p)
    return out


def build(stage: Path, image: Path, busybox: str) -> None:
    exe = os.path.realpath(sys.executable)
    stdlib = sysconfig.get_path("stdlib")
    dynload = glob.glob(os.path.join(stdlib, "lib-dynload", "*.so"))
    for path in [exe, stdlib, *glob.glob(os.path.join(sys.base_prefix, "lib", "libpython*.so*")), *_libs([exe, *dynload])]:
        _copy(path, stage)
    (stage / "bin").mkdir(exist_ok=True)
    shutil.copy2(busybox, stage / "bin" / "busybox")
    (stage / "bin" / "sh").symlink_to("busybox")
    for d in ("proc", "sys", "dev", "tmp", "mnt", "out", "etc", "usr/lib", "root"):
        (stage / d).mkdir(parents=True, exist_ok=True)
    # At a fixed guest path, not the host's: a checkout under /tmp would be hidden by the
    # guest's own /tmp mount (a CI clone in /tmp failed so).
    shutil.copytree(REPO / "sfteval", stage / GUEST_REPO.lstrip("/") / "sfteval", ignore=shutil.ignore_patterns("__pycache__", "dashboard", "catalog"))
    shutil.copytree(REPO / "tests" / "cgroup2", stage / GUEST_REPO.lstrip("/") / "tests" / "cgroup2")
    shutil.copy2(REPO / "tests" / "cgroup2" / "init.sh", stage / "init.sh")
    (stage / "python-path").write_text(exe)
    (stage / "repo-path").write_text(GUEST_REPO)  # init.sh runs the check from there
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(stage), str(image), "512M"], check=True)


if __name__ == "__main__":
    build(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3])
