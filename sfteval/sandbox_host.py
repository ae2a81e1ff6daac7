"""The host side of the fork servers (read `sfteval.execute` first): the program's
file-system plan (what is allowed, which site-packages are masked), and starting and
stopping one fork server (`sandbox_child.py` under `python -I`, a scrubbed environment,
cwd /, its own session) with the one-frame setup report it answers first.
Not covered here: the pool, the isolation probe and the results (`execute`).
"""

from __future__ import annotations

import glob
import json
import os
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from typing import Any

from sfteval.errors import SftevalError

_CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "sandbox_child.py")
_CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}


def _site_dirs() -> list[str]:
    import site

    dirs = set(site.getsitepackages()) | {site.getusersitepackages()}
    dirs |= {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    return sorted(os.path.realpath(d) for d in dirs if d)


def filesystem_plan(read_paths: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """(allowed paths, masked folders) of the program's root file system. A declared
    path under /tmp, /dev/shm or /proc would be hidden by the program's own: refused."""
    for p in read_paths:
        real = os.path.realpath(p)
        if any(real == top or real.startswith(top + os.sep) for top in ("/tmp", "/dev/shm", "/proc")):
            raise SftevalError(f"read path {p} lies under /tmp, /dev/shm or /proc, which each program gets fresh",
                               field="options.read_paths", hint="put the files the benchmark needs elsewhere (e.g. /var/tmp, /srv)")
        if not os.path.exists(real):
            raise SftevalError(f"read path {p} does not exist", field="options.read_paths")
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    base = os.path.realpath(sys.base_prefix)
    allow = [os.path.realpath(sys.executable), stdlib]
    allow += [os.path.realpath(p) for p in sys.path if p and os.path.realpath(p).startswith(base + os.sep)
              and "-packages" not in p and os.path.isdir(p)]  # fmt: skip
    # The interpreter's own shared library (libpython), where it is not in a system folder.
    allow += sorted(glob.glob(os.path.join(base, "lib", "libpython*.so*")))
    allow += [os.path.realpath(p) for p in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib") if os.path.isdir(p)]
    allow += [os.path.realpath(p) for p in read_paths]
    masks = set()
    for d in [*allow, stdlib, *_site_dirs()]:
        for pattern in ("site-packages", "dist-packages", "python3*/site-packages", "python3*/dist-packages",
                        "python3/dist-packages", "lib/python3*/site-packages"):  # fmt: skip
            masks.update(os.path.realpath(m) for m in glob.glob(os.path.join(d, pattern)) if os.path.isdir(m))
    declared = {os.path.realpath(p) for p in read_paths}
    masks = {m for m in masks if m not in declared}
    seen: list[str] = []
    for p in allow:
        if p not in seen and not any(p.startswith(m + os.sep) or p == m for m in masks - declared):
            seen.append(p)
    return seen, sorted(masks)


def zygote_cmd(mode: str, read_paths: Sequence[str], limits: dict[str, Any], cpu: int | None = None) -> list[str]:
    allow, masks = filesystem_plan(read_paths)
    cfg = {"mode": mode, "allow": allow, "masks": masks, "limits": limits, "cpu": cpu,
           "cgroup": os.environ.get("SFTEVAL_CGROUP")}  # a delegated cgroup v2 folder to use
    return [sys.executable, "-I", _CHILD, "--zygote", json.dumps(cfg)]


def start(
    mode: str, read_paths: Sequence[str], limits: dict[str, Any], cpu: int | None = None
) -> tuple[subprocess.Popen[bytes], dict[str, Any]]:
    proc = subprocess.Popen(
        zygote_cmd(mode, read_paths, limits, cpu),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=dict(_CLEAN_ENV),  # the caller's environment (secrets) never reaches programs
        cwd="/",
        close_fds=True,
        start_new_session=True,
    )
    assert proc.stdout
    head = proc.stdout.read(4)
    body = proc.stdout.read(struct.unpack("<I", head)[0]) if len(head) == 4 else b""
    try:
        setup = json.loads(body)
    except ValueError:
        setup = {"ok": False, "error": "the fork server exited during setup"}
    return proc, setup


def stop(proc: subprocess.Popen[bytes], setup: dict[str, Any] | None = None) -> None:
    try:
        if proc.stdin:
            proc.stdin.close()
        proc.wait(timeout=5)
    except Exception:
        proc.kill()
        proc.wait()
    if setup and setup.get("scratch"):  # the host folders of an unmapped user namespace
        import shutil

        shutil.rmtree(setup["scratch"], ignore_errors=True)
    if setup and setup.get("cgroup_paths"):
        from sfteval.sandbox_cgroups import remove_cgroups

        remove_cgroups(setup["cgroup_paths"])
