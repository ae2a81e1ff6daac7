#!/usr/bin/env bash
# The code sandbox's test tools: util-linux's setpriv (the capability-less half of the
# adversarial suite) and Debian's bubblewrap (the test that a machine without any
# isolation refuses to run programs unless --allow-unsafe-exec); and, for the cgroup v2
# test (tests/test_execute_cgroup2.py, a guest kernel with a pure cgroup2 hierarchy),
# QEMU, the distribution's cloud kernel with its initrd, a static busybox and e2fsprogs.
# The sandbox itself needs none of them: it makes its namespaces with the kernel's own calls.
set -euo pipefail
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v setpriv >/dev/null || need+=(util-linux)
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs)
[ -x /bin/busybox ] || need+=(busybox-static)
ls /boot/vmlinuz-* >/dev/null 2>&1 || need+=(linux-image-cloud-amd64)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
bwrap --version
