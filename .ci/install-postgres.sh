#!/usr/bin/env bash
# Install Debian's PostgreSQL server binaries for the vote-store tests (tests/pg_server.py
# starts its own server on 127.0.0.1 in a temp folder; the package's own cluster is not used).
set -euo pipefail
if ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  echo "postgresql already installed: $(ls -d /usr/lib/postgresql/*/bin | tail -1)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends postgresql
ls -d /usr/lib/postgresql/*/bin
