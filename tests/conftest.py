"""Shared fixtures. The real embedded model is loaded once per test session, when a test asks
for it; `fake_runtime` runs the services on the scripted fake (tests/fake_script.py)."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from codey.backends.llamacpp import LlamaCppBackend
from codey.config import Settings, load_settings
from codey.provision.catalogue import SMALL
from codey.runtime import Runtime
from tests.fake_script import CONTEXT_LENGTH, write_script


@pytest.fixture(scope="session")
def model_settings_env() -> dict[str, str]:
    """Environment for subprocesses: the shared model cache, the 0.5B for every service and a
    small context, for speed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CODEY_")}
    env["CODEY_MODEL__CONTEXT_LENGTH"] = "4096"
    env["CODEY_MODEL__AVAILABLE"] = json.dumps([SMALL.name])
    return env


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    db = tmp_path_factory.mktemp("store") / "codey.db"
    return load_settings(
        model={"context_length": 4096, "available": [SMALL.name]},
        store={"sqlite_path": db},
    )


@pytest.fixture(scope="session")
def backend(settings: Settings) -> Iterator[LlamaCppBackend]:
    backend = LlamaCppBackend.load(settings.model)
    yield backend
    backend.engine.close()


@pytest.fixture(scope="session")
async def runtime(settings: Settings, backend: LlamaCppBackend) -> AsyncIterator[Runtime]:
    runtime = Runtime.start(settings, backend=backend)
    yield runtime
    runtime.database.close()


@pytest.fixture(scope="session")
async def fake_runtime(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Runtime]:
    """A runtime whose one model is the fake, answering from the suite's script."""
    tmp = tmp_path_factory.mktemp("fake-runtime")
    script = write_script(tmp / "script.json")
    deployment = {"backend": "fake", "url": str(script), "context_length": CONTEXT_LENGTH}
    settings = load_settings(
        models={"scripted": {"deployments": [deployment]}},
        store={"sqlite_path": tmp / "codey.db"},
    )
    runtime = Runtime.start(settings)
    yield runtime
    await runtime.close()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "codey.db"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--slow", action="store_true", help="also run the tests that take minutes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked `slow` wait out real per-minute windows or fuzz the API for a minute: they
    run with --slow (as scripts/test.sh runs the suite), so that `pytest -m "not model"` stays
    quick."""
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="takes minutes; run with --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
