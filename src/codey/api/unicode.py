"""JSON bodies that are not text: bytes that are not UTF-8, or half of a UTF-16 pair spelled
as an escape (`"\\ud800"`), which Python reads into a string that cannot be encoded, hashed
into a cache key or stored. Either is the caller's mistake, so it gets a 400 that says where,
here, before any route reads the body.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codey.api.errors import HttpError, dialect_of, render

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""A JSON escape of a surrogate: only bodies that hold one are read and searched."""
_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where in `value` (a parsed JSON document) a string holds a lone surrogate, as a dotted
    path ("messages.0.content"); None if every string is text."""
    if isinstance(value, str):
        return (path or "body") if _SURROGATE.search(value) else None
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for key, item in items:
        where = f"{path}.{key}" if path else str(key)
        if isinstance(key, str) and _SURROGATE.search(key):
            return where
        if (found := lone_surrogate(item, where)) is not None:
            return found
    return None


def not_text(where: str) -> str:
    return (
        f"{where}: holds a lone UTF-16 surrogate (an escape such as \\ud800 without its pair), "
        "which is not text; send valid Unicode."
    )


class TextCheck:
    """ASGI middleware: a JSON body that is not UTF-8, or has a lone surrogate in any string,
    gets a 400. It sits inside `BodyLimit`, so it holds no more than a body may be."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _json_body(scope):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        refused = None
        try:
            while True:
                message = await receive()
                messages.append(message)
                if message["type"] != "http.request" or not message.get("more_body", False):
                    break
        except HTTPException as exc:  # too large: the route reading the body says so
            refused = exc
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        error = None if refused is not None else _not_text(body)
        if error is not None:
            await render(error, dialect_of(scope["path"]))(scope, receive, send)
            return

        async def replay() -> Message:
            if messages:
                return messages.pop(0)
            if refused is not None:
                raise refused
            return await receive()

        await self.app(scope, replay, send)


def _json_body(scope: Scope) -> bool:
    if scope["method"] not in ("POST", "PUT", "PATCH"):
        return False
    for name, value in scope["headers"]:
        if name == b"content-type":
            return b"json" in value.lower()
    return True  # no type: the routes read it as JSON


def _not_text(body: bytes) -> HttpError | None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"The request body is not valid JSON: byte {exc.start} is not UTF-8."
        return HttpError(400, "invalid_json", message)
    if not _SURROGATE_ESCAPE.search(body):
        return None
    try:
        where = lone_surrogate(json.loads(body))
    except (ValueError, RecursionError):
        return None  # not JSON: the route says so
    return None if where is None else HttpError(400, "invalid_request", not_text(where), where)
