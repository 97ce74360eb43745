#!/usr/bin/env bash
# Set up codey in ./.venv: the engine (llama-cpp-python compiled from source without AMX, about
# five minutes on two cores, then pip's wheel cache makes it instant), the pinned dependencies,
# and the verified models (the 0.5B, and the 1.5B unless model.available leaves it out: about
# 1.1 GB of download and 2.2 GB of disk more, and a minute).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
    echo "codey needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip

# llama.cpp's AMX code crashes in its first matrix multiply on Sapphire/Granite Rapids, so the
# engine is built without it (every other instruction of this CPU kept). pip's wheel cache does
# not key on these flags: what got installed is checked, and a build with AMX is replaced.
# (-P: run the check without putting its folder on sys.path.)
no_amx=$(.venv/bin/python -P src/codey/backends/engine_build.py --flags)
check_engine() { .venv/bin/python -P src/codey/backends/engine_build.py; }
if ! check_engine >/dev/null 2>&1; then
    echo "Installing the engine, llama-cpp-python, built for this CPU without AMX ..."
    CFLAGS="$no_amx" CXXFLAGS="$no_amx" .venv/bin/python -m pip install --quiet \
        --no-binary llama-cpp-python llama-cpp-python==0.3.36
    if ! check_engine >/dev/null 2>&1; then
        echo "The installed llama-cpp-python has AMX compiled in (a cached wheel?): rebuilding ..."
        CFLAGS="$no_amx" CXXFLAGS="$no_amx" .venv/bin/python -m pip install --quiet \
            --no-cache-dir --force-reinstall --no-deps --no-binary llama-cpp-python \
            llama-cpp-python==0.3.36
    fi
    if ! check_engine; then
        echo "llama-cpp-python still has AMX compiled in; see codey doctor's advice in the README." >&2
        exit 1
    fi
fi
echo "Installing codey and its pinned dependencies into .venv ..."
.venv/bin/python -m pip install --quiet -e '.[dev]'
.venv/bin/codey model pull
