#!/usr/bin/env bash
# A separate virtual environment with lighteval, for the lighteval import tests
# (tests/test_interop_lighteval.py run real lighteval in it as a subprocess).
# It cannot share .venv: lighteval 0.13.0 pins nltk==3.9.1 and termcolor==2.3.0 and pulls
# inspect-ai, which conflict with the dev extra. torch is pinned as in pyproject.toml so a
# CPU machine takes the local CPU build, not a multi-GB CUDA one.
# Idempotent: a venv built by this very script (same pins, recorded in a stamp) is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${LIGHTEVAL_VENV:-.venv-lighteval}"
# transformers 5 needs huggingface_hub >= 1, whose list_models() lost the model_name argument
# that lighteval 0.13.0 calls while it loads its task registry (tasks/tasks/mt_bench): both
# are held at the releases lighteval 0.13.0 was made against. xxhash 4 refuses str input,
# which lighteval's DetailsLogger hashes (xxhash.xxh64(doc.query)).
pins=("torch==2.13.0" "lighteval==0.13.0" "transformers>=4.54,<5" "huggingface_hub<1" "xxhash<4")
stamp="$venv/.sfteval-pins"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "${pins[*]}" ]; then
    echo "lighteval already installed in $venv (${pins[*]})"
    exit 0
fi
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q --upgrade pip
"$venv/bin/python" -m pip install -q "${pins[@]}"
"$venv/bin/python" -c "import lighteval.__main__, importlib.metadata as m; print('lighteval', m.version('lighteval'), 'in $venv')"
echo "${pins[*]}" > "$stamp"
