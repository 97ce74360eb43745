"""Real `codey serve` processes on loopback, shared by the API tests: `fake_server` on the
scripted fake (most tests), `server` on the real embedded model (the few that need it)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.fake_script import fake_config, write_script

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
"""Screenshots the browser tests leave for people to look at."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen[str]
    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_server(tmp: Path, port: int | None = None, **env_overrides: str | None) -> Server:
    """Start `codey serve`; an override of None removes that variable."""
    port = port or free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}
    env.update(
        CODEY_MODEL__CONTEXT_LENGTH="4096",
        CODEY_MODEL__AVAILABLE='["qwen2.5-coder-0.5b-instruct"]',  # every service on the 0.5B
        CODEY_STORE__SQLITE_PATH=str(tmp / "codey.db"),
        # The suite sends far more than the default per-minute limits allow.
        CODEY_LIMITS__GENERATION__REQUESTS_PER_MINUTE="100000",
        CODEY_LIMITS__CHAT__REQUESTS_PER_MINUTE="100000",
        CODEY_LIMITS__COMPLETION__REQUESTS_PER_MINUTE="100000",
    )
    for name, value in env_overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    log = tmp / f"server-{port}.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "codey", "serve", "--port", str(port), "--log-level", "warning"],
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"codey serve exited early:\n{log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return Server(url, process, log)
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"codey serve did not become ready:\n{log.read_text()}")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(tmp_path_factory.mktemp("server"))
    yield server
    server.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=300) as client:
        yield client


@pytest.fixture(scope="session")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`codey serve` on two fakes reading tests/fake_script.py: "scripted", which every service
    runs on, and "narrow", one request in flight at a time (a held slot shows as a 503)."""
    tmp = tmp_path_factory.mktemp("fake-server")
    script = write_script(tmp / "script.json")
    config = fake_config(tmp / "codey.toml", script, scripted="", narrow="max_concurrency = 1")
    server = start_server(tmp, CODEY_CONFIG=str(config))
    yield server
    server.stop()


@pytest.fixture
def fake_client(fake_server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake_server.url, timeout=60) as client:
        yield client


@pytest.fixture
def browser() -> Iterator[webdriver.Chrome]:
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        pytest.skip("needs Debian's chromium and chromium-driver (scripts/test.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or ""
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,2000",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()
