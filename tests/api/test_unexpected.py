"""A bug in a route: a 500 in the dialect's shape, and the exception stays in codey."""

from __future__ import annotations

import httpx
from starlette.requests import Request
from starlette.routing import Route, Router

from codey.api.errors import Unexpected


def _bug(request: Request) -> None:
    raise RuntimeError("a bug")


async def test_a_bug_answers_500_in_its_dialect_and_goes_no_further() -> None:
    """The server never sees the exception, so it keeps the client's connection open."""
    routes = [Route(path, _bug, methods=["POST"]) for path in ("/v1/completions", "/api/x")]
    transport = httpx.ASGITransport(app=Unexpected(Router(routes)))  # raises what escapes
    async with httpx.AsyncClient(transport=transport, base_url="http://codey") as client:
        openai = await client.post("/v1/completions")
        native = await client.post("/api/x")
    assert openai.status_code == native.status_code == 500
    assert openai.json()["error"]["code"] == "internal_error"
    assert native.json() == {
        "success": False,
        "error": {"type": "internal_error", "message": "codey failed unexpectedly; see its log."},
    }
