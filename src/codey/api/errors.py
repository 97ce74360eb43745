"""Every error an HTTP client can see, mapped once to a status and to each dialect's shape.

native   {"success": false, "error": {"type", "message"}}   (a hint ends the message)
openai   {"error": {"message", "type", "param", "code"}}
vertex   {"error": {"code", "message", "status"}}
"""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass
from typing import Literal

from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from codey import errors

log = logging.getLogger("codey.api")

Dialect = Literal["native", "openai", "vertex"]


@dataclass(frozen=True)
class HttpError:
    status: int
    kind: str
    """A short machine name: invalid_request, not_found, overloaded, ..."""
    message: str
    param: str | None = None
    retry_after: int | None = None


_GOOGLE_STATUS = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    405: "UNIMPLEMENTED", 413: "INVALID_ARGUMENT", 415: "INVALID_ARGUMENT",
    429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}  # fmt: skip
_OPENAI_TYPE = {
    400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
    404: "invalid_request_error", 405: "invalid_request_error", 413: "invalid_request_error",
    415: "invalid_request_error", 429: "rate_limit_exceeded",
    503: "server_overloaded",
}  # fmt: skip


HTTP_KINDS = {
    400: "invalid_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "body_too_large",
}
"""Short names of the errors Starlette raises itself, by status."""


def from_http(status: int, message: str, cause: BaseException | None = None) -> HttpError:
    """An error Starlette or FastAPI raised; `cause` is what made FastAPI give up reading a
    body it could not parse (it says only "There was an error parsing the body")."""
    if status == 400 and isinstance(cause, RecursionError):
        message = (
            "The request body is not valid JSON here: its arrays or objects nest deeper than "
            "this server reads (about 1,000 levels). Send a flatter document."
        )
        return HttpError(400, "invalid_json", message)
    if status == 400 and isinstance(cause, ValueError):
        if "digits" in str(cause):
            message = (
                "The request body is not valid JSON here: a number has more than "
                f"{sys.get_int_max_str_digits():,} digits. Send it as a string."
            )
        else:
            message = f"The request body is not valid JSON: {cause}"
        return HttpError(400, "invalid_json", message)
    return HttpError(status, HTTP_KINDS.get(status, "http_error"), message)


def from_codey(error: errors.CodeyError, retry_after: int) -> HttpError:
    message = f"{error.message} {error.hint}" if error.hint else error.message
    wait = None
    if isinstance(
        error,
        errors.RateLimited | errors.NoDeployment | errors.EngineUnavailable | errors.EngineCrashed,
    ):
        wait = error.retry_after
    elif isinstance(error, errors.Overloaded):
        wait = retry_after
    return HttpError(error.status, error.kind, message, retry_after=wait)


def from_validation(exc: RequestValidationError, content_type: str = "") -> HttpError:
    """One readable sentence per field: where it is and what is wrong (for a field that takes
    one of several types, what each would need). A body refused whole that was not sent as
    JSON (`curl -d` without a type sends a form) was never read as JSON: 415."""
    items = exc.errors()
    not_json = bool(content_type) and "json" not in content_type.lower()
    if not_json and any(item["loc"] == ("body",) for item in items):
        message = (
            f"Send the body as JSON, with Content-Type: application/json (not {content_type})."
        )
        return HttpError(415, "unsupported_media_type", message)
    problems: dict[str, list[str]] = {}
    for item in items:
        if item.get("type") == "json_invalid":
            detail = item.get("ctx", {}).get("error", "invalid JSON")
            return HttpError(400, "invalid_json", f"The request body is not valid JSON: {detail}.")
        location = [str(p) for p in item.get("loc", ()) if p != "body" and not _type_tag(p)]
        problems.setdefault(".".join(location) or "body", []).append(item.get("msg", "invalid"))
    message = "; ".join(f"{where}: {' or '.join(said)}" for where, said in problems.items())
    return HttpError(400, "invalid_request", message + ".", param=next(iter(problems), None))


def _type_tag(part: object) -> bool:
    """Whether a place in pydantic's error location names a type of a union ("str",
    "list[str]", "TextPart"), not a field."""
    return isinstance(part, str) and (
        part in ("str", "int", "float", "bool", "none", "list", "dict")
        or "[" in part
        or part[:1].isupper()
    )


def invalid(exc: ValidationError | RequestValidationError) -> errors.InvalidRequest:
    """A body checked outside a route (a batch line), as the error its route would give."""
    return errors.InvalidRequest(from_validation(RequestValidationError(exc.errors())).message)


def dialect_of(path: str) -> Dialect:
    if path.startswith(("/v1/projects/", "/v1/publishers/")):
        return "vertex"
    # /tokenize (vLLM's), /beta/completions (DeepSeek's) and /infill (llama.cpp's) sit beside
    # the OpenAI API and answer errors as it does.
    if path.startswith(("/v1/", "/beta/")) or path in ("/tokenize", "/infill"):
        return "openai"
    return "native"


def error_body(error: HttpError, dialect: Dialect) -> dict[str, object]:
    """The dialect's error object; also what a stream sends when it fails after its start."""
    if dialect == "openai":
        return {
            "error": {
                "message": error.message,
                "type": _OPENAI_TYPE.get(error.status, "server_error"),
                "param": error.param,
                "code": error.kind,
            }
        }
    if dialect == "vertex":
        return {
            "error": {
                "code": error.status,
                "message": error.message,
                "status": _GOOGLE_STATUS.get(error.status, "UNKNOWN"),
            }
        }
    return {"success": False, "error": {"type": error.kind, "message": error.message}}


def render(error: HttpError, dialect: Dialect) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after)} if error.retry_after else None
    return JSONResponse(error_body(error, dialect), status_code=error.status, headers=headers)


UNEXPECTED = HttpError(500, "internal_error", "codey failed unexpectedly; see its log.")


class Unexpected:
    """ASGI middleware: a bug in a route answers 500 in its dialect's shape, and the connection
    stays open. (Starlette's own last-resort handler answers too, then raises on to the server,
    which drops the connection, so a client's next request on it fails.)"""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except Exception:
            if started:  # too late for another answer
                raise
            log.exception("unexpected error on %s", scope["path"])
            await render(UNEXPECTED, dialect_of(scope["path"]))(scope, receive, send)
