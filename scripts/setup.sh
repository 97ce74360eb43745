#!/usr/bin/env bash
# Set up codey in ./.venv: pinned dependencies (llama-cpp-python compiles from source, about
# five minutes on two cores, then pip's wheel cache makes it instant) and the verified model.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "codey needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
echo "Installing codey and its pinned dependencies into .venv ..."
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/codey model assemble
