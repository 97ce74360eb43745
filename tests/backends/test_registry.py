"""Backends are found by name, the built-in ones through the same registry as any other."""

from __future__ import annotations

import pytest

from codey.backends.base import Backend
from codey.backends.fake import FakeBackend
from codey.backends.registry import BackendContext, names, register
from codey.config import Deployment, load_settings
from codey.errors import ConfigError
from codey.runtime import build_routers


def test_the_built_in_backends_are_registered_names() -> None:
    assert {"llamacpp", "openai", "vertex", "fake"} <= set(names())


def test_a_registered_backend_serves_a_model() -> None:
    made: list[Deployment] = []

    @register("scripted-test")
    def scripted(deployment: Deployment, context: BackendContext) -> Backend:
        made.append(deployment)
        return FakeBackend(model_id="from-the-registry")

    settings = load_settings(
        models={"m": {"deployments": [{"name": "one", "backend": "scripted-test"}]}}
    )
    (member,) = build_routers(settings, None)["m"].members
    assert member.backend.model_id == "from-the-registry"
    assert [d.name for d in made] == ["one"]


def test_an_unknown_backend_names_the_known_ones() -> None:
    settings = load_settings(models={"m": {"deployments": [{"backend": "nonesuch"}]}})
    with pytest.raises(ConfigError) as caught:
        build_routers(settings, None)
    assert "nonesuch" in caught.value.message
    assert caught.value.hint is not None and "openai" in caught.value.hint
