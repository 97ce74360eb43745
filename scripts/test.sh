#!/usr/bin/env bash
# Run the whole test suite, setting up first if needed. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The shared-mode tests need the Redis on 127.0.0.1:6379; start it if it is not running.
if command -v redis-server >/dev/null && ! (echo PING | timeout 2 bash -c 'cat > /dev/tcp/127.0.0.1/6379') 2>/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
# The dashboard test drives a real headless Chromium: Debian's, with its driver.
if ! command -v chromedriver >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium and chromium-driver for the dashboard test ..."
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy src
exec .venv/bin/pytest --slow "$@"
