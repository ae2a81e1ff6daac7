#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and its WebDriver for the `browser` tests.
# We use the distribution's browser on purpose: tools that download their own browser
# (playwright install, webdriver-manager) fail on machines without general internet.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
  echo "chromium already installed: $(chromium --version 2>/dev/null || true)"
  exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver fonts-dejavu-core
chromium --version
chromedriver --version
