"""Refuse request bodies over the configured size with 413, before reading them whole."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codey.api.errors import dialect_of, from_http, render


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"The request body is larger than {limit:,} bytes, the limit of this server."
        )


class FileTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(400, f"The file is larger than {limit:,} bytes, the limit for a batch.")


MULTIPART_ROOM = 65536
"""What a multipart upload may carry besides its file: part headers and form fields."""


def _too_large(limit: int, file_limit: int | None) -> HTTPException:
    """The refusal of a body over `limit`: the file's own limit, where the path takes one."""
    return BodyTooLarge(limit) if file_limit is None else FileTooLarge(file_limit)


class BodyLimit:
    """ASGI middleware: checks Content-Length up front and counts chunked bodies as they come."""

    def __init__(self, app: ASGIApp, max_bytes: int, uploads: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.uploads = uploads or {}
        """Paths that take a file, with the file's own limit: a body past it is a 400 that
        says so, as the route says of a file it finds too large."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        file_limit = self.uploads.get(scope["path"])
        limit = self.max_bytes if file_limit is None else file_limit + MULTIPART_ROOM
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                refusal = _too_large(limit, file_limit)
                error = from_http(refusal.status_code, refusal.detail)
                await render(error, dialect_of(scope["path"]))(scope, receive, send)
                return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(limit, file_limit)
            return message

        await self.app(scope, counting_receive, send)
