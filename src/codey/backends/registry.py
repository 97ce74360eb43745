"""Backends by name: one small extension point that the built-in backends use too.

A backend module registers a factory under the name that deployments give as `backend`:

    @register("openai")
    def _openai(deployment: Deployment, context: BackendContext) -> Backend: ...

Built-in modules load on first use, so google-genai loads only when a deployment asks for
Vertex; other packages add backends through the `codey.backends` entry point group, whose
entries are modules that call `register` when imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from codey.backends.base import Backend
from codey.config import Deployment, ResilienceSettings
from codey.errors import ConfigError

if TYPE_CHECKING:  # the embedded backend is only named here, never loaded
    from codey.backends.llamacpp import LlamaCppBackend


@dataclass
class BackendContext:
    """What a factory may need besides its deployment."""

    resilience: ResilienceSettings
    embedded: Callable[[str | None], LlamaCppBackend]
    """The embedded engine running a registry model (None: model.path or the default
    model), started on its first call."""


Factory = Callable[[Deployment, BackendContext], Backend]

BUILT_IN = {
    "llamacpp": "codey.backends.llamacpp",
    "openai": "codey.backends.openai",
    "vertex": "codey.backends.vertex",
    "fake": "codey.backends.fake",
}
_factories: dict[str, Factory] = {}


def register(name: str) -> Callable[[Factory], Factory]:
    """Make `name` a backend that deployments can name."""

    def add(factory: Factory) -> Factory:
        _factories[name] = factory
        return factory

    return add


def create(deployment: Deployment, context: BackendContext) -> Backend:
    """The backend of one deployment, from the factory registered under its name."""
    return factory(deployment.backend)(deployment, context)


def factory(name: str) -> Factory:
    if name not in _factories and name in BUILT_IN:
        importlib.import_module(BUILT_IN[name])
    if name not in _factories:
        for entry in entry_points(group="codey.backends"):
            if entry.name == name:
                entry.load()
    if name not in _factories:
        raise ConfigError(
            f"No backend is called {name!r}.",
            hint=f"Use one of {', '.join(names())}, or install the package that adds it.",
        )
    return _factories[name]


def names() -> list[str]:
    return sorted({*BUILT_IN, *_factories, *(e.name for e in entry_points(group="codey.backends"))})
