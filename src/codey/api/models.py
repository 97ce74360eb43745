"""Which model names the API answers to."""

from __future__ import annotations

from fastapi import Request

from codey.errors import NotFound


def served_names(model_id: str, aliases: list[str]) -> list[str]:
    return [model_id, *(a for a in aliases if a != model_id)]


def require_model(request: Request, name: str) -> None:
    """Refuse a model name this server does not serve, listing the ones it does."""
    names: list[str] = request.app.state.model_names
    if name not in names:
        raise NotFound(
            f"The model {name!r} does not exist here.",
            hint=f"Use one of: {', '.join(names)}.",
        )
