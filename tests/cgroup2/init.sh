#!/bin/busybox sh
# PID 1 of the QEMU/KVM guest of tests/test_execute_cgroup2.py: a kernel of its own, so
# a pure cgroup v2 hierarchy with memory, pids and cpu, which the v1 host cannot offer.
B=/bin/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev 2>/dev/null
$B mount -t tmpfs -o mode=1777 tmpfs /tmp
$B mkdir -p /dev/shm && $B mount -t tmpfs -o mode=1777 tmpfs /dev/shm
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "+memory +pids +cpu" > /sys/fs/cgroup/cgroup.subtree_control
cd "$($B cat /repo-path)"  # where build_image.py copied sfteval and the check script
PY=$($B cat /python-path)
"$PY" tests/cgroup2/check.py > /out/result.json 2> /out/stderr.txt
echo "exit $?" >> /out/stderr.txt
$B sync
echo o > /proc/sysrq-trigger
$B sleep 10
