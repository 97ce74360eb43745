"""Which model names the API answers to, and the one name each stands for."""

from __future__ import annotations

from fastapi import Request

from codey.config import Service, Settings
from codey.errors import NotFound


def served_names(models: list[str], aliases: list[str]) -> list[str]:
    return [*models, *(a for a in aliases if a not in models)]


def resolve_model(request: Request, service: Service, asked: str | None) -> str:
    """The configured model a request runs on (see `pick_model`)."""
    state = request.app.state
    return pick_model(state.runtime.settings, state.model_names, service, asked)


def pick_model(settings: Settings, names: list[str], service: Service, asked: str | None) -> str:
    """The configured model a request runs on: the one it names, or for an alias (and for
    dialects that name no model of codey's) the one its service runs on. An unknown name is
    refused with the names this server serves."""
    if asked is not None and asked in settings.models:
        return asked
    if asked is None or asked in names:
        return settings.model_for(service)
    raise NotFound(
        f"The model {asked!r} does not exist here.", hint=f"Use one of: {', '.join(names)}."
    )
