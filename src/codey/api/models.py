"""Which model names the API answers to."""

from __future__ import annotations

from fastapi import Request

from codey.errors import NotFound


def served_names(models: list[str], aliases: list[str]) -> list[str]:
    return [*models, *(a for a in aliases if a not in models)]


def require_model(request: Request, name: str) -> None:
    """Refuse a model name this server does not serve, listing the ones it does."""
    names: list[str] = request.app.state.model_names
    if name not in names:
        raise NotFound(
            f"The model {name!r} does not exist here.",
            hint=f"Use one of: {', '.join(names)}.",
        )
