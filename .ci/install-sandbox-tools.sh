#!/usr/bin/env bash
# The code sandbox's test tools: util-linux's setpriv (the capability-less half of the
# adversarial suite) and Debian's bubblewrap (the test that a machine without any
# isolation refuses to run programs unless --allow-unsafe-exec). The sandbox itself
# needs neither: it makes its namespaces with the kernel's own calls.
set -euo pipefail
need=()
command -v bwrap >/dev/null || need+=(bubblewrap)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq "${need[@]}"
fi
bwrap --version
