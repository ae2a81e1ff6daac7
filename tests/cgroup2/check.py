"""Run inside the User-Mode Linux guest of tests/test_execute_cgroup2.py (as its root,
on a pure cgroup v2 hierarchy): the sandbox's cgroup v2 path for real. Prints one JSON
object: what the sandbox recorded, and the label of each probe program."""

from __future__ import annotations

import json
import os
import sys

sys.path.insert(0, os.getcwd())

from sfteval.execute import Job, Limits, Sandbox  # noqa: E402

ADD = "def check(candidate):\n    assert candidate(2, 3) == 5\n"
PROGRAMS = {
    "honest": "def add(a, b):\n    return a + b\n",
    # memory that RLIMIT_AS does not count: only the memory cgroup (memory.max) stops these
    "shm_fill": "with open('/dev/shm/fill', 'wb') as f:\n    for _ in range(60):\n        f.write(b'x' * (4 << 20))\n"
                "def add(a, b):\n    return a + b\n",
    "memfd": "import os\nfd = os.memfd_create('x')\nfor _ in range(60):\n    os.write(fd, b'x' * (4 << 20))\n"
             "def add(a, b):\n    return a + b\n",
    # processes: pids.max bounds the fork server's cgroup
    "fork_bomb": "import os\nn = 0\ntry:\n    for _ in range(200):\n        if os.fork() == 0:\n            import time\n"
                 "            time.sleep(30)\n        n += 1\nexcept OSError:\n    pass\ndef add(a, b):\n    return n\n",
    # a single task: its own clock (sandbox_clock), where the guest kernel has schedstat
    "spinner": "while True:\n    pass\n",
    # two tasks: the wall clock, and its CPU measured because cpu.max bounds it to one CPU
    "spinner_threads": "import threading, time\nthreading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
                       "while True:\n    pass\n",
}


def main() -> None:
    # files up to 1 GiB: the memory cgroup, not RLIMIT_FSIZE, must be what stops the fills
    limits = Limits(timeout_s=10.0, memory_bytes=48 << 20, tmpfs_bytes=512 << 20, max_file_bytes=1 << 30)
    with Sandbox(1, limits, rerun_timeouts=False) as sb:
        record = sb.describe()
        # the fork bomb passes only if it made all 200 processes
        tests = {name: ADD if name != "fork_bomb" else "def check(candidate):\n    assert candidate(0, 0) == 200\n" for name in PROGRAMS}
        results = sb.run([Job(p, tests[name], "add") for name, p in PROGRAMS.items()])
        zygote = sb._all[0].proc.pid
        with open(f"/proc/{zygote}/cgroup") as f:
            cgroup = f.read().strip()
        base = "/sys/fs/cgroup" + cgroup.split("::", 1)[1]
        limits_seen = {k: open(f"{base}/{k}").read().strip() for k in ("memory.max", "pids.max", "cpu.max")}
        peak = int(open(f"{base}/memory.peak").read()) if os.path.exists(f"{base}/memory.peak") else None
        events = dict(line.split() for line in open(f"{base}/memory.events").read().splitlines())
    out = {
        "kernel": os.uname().release,
        "record": {k: record.get(k) for k in ("isolation", "cgroups", "cgroup_note", "seccomp", "processes")},
        "zygote_cgroup": cgroup,
        "limits_seen": limits_seen,
        "memory_peak": peak,
        "memory_events": events,
        "results": {name: [r.label, r.detail[:300], r.cpu_s, r.clock_s] for name, r in zip(PROGRAMS, results)},
        "left_over": sorted(d for d in os.listdir("/sys/fs/cgroup") if d.startswith("sfteval-")),
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
