"""The OpenAPI document, told from the same error mapping as the answers themselves.

FastAPI documents 422 for invalid input, but codey answers 400 in each dialect's own error
shape. Here every operation gets the statuses it can answer instead, each with the error schema
of the dialect its path belongs to (`api.errors.dialect_of`), and streaming operations their
streamed media types. Which statuses a route can answer follows from what it is: a body (400,
413), a caller's key (401, 403), a model or id to look up (404), a job run on a model through
the gateway (429, 502, 503 with Retry-After, 504).
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from codey.api.calls import principal
from codey.api.errors import Dialect, dialect_of

_JOB = (429, 502, 503, 504)
EXTRA: dict[str, tuple[int, ...]] = {
    "generate": _JOB,
    "chat": (*_JOB, 404),  # an unknown conversation
    "complete": _JOB,
    "chat_completions": (*_JOB, 404),  # an unknown model
    "completions": (*_JOB, 404),
    "predict": (*_JOB, 404),
    "server_streaming_predict": (*_JOB, 404),
    "tokenize": (404, 502, 503, 504),
    "usage": (400, 404),
    "publisher_model": (404,),
    "readyz": (503,),
    "stats": (401,),  # reads the key itself, not through a dependency
}
"""Statuses a route can answer besides those its shape implies, by endpoint name."""

STREAMED: dict[str, str] = {
    "chat_completions": "text/event-stream",
    "completions": "text/event-stream",
    "server_streaming_predict": "application/json",
}

_DESCRIPTIONS = {
    400: "Invalid input: an empty or out-of-range field, malformed JSON, or a prompt longer "
    "than the context window; the message names the field.",
    401: "No API key, or one this server does not know.",
    403: "The key may not use this service, or read another principal's usage.",
    404: "An unknown model, conversation, principal or route.",
    413: "The request body is larger than the server's limit.",
    429: "Over the daily quota, a daily budget or the per-minute limit; see Retry-After.",
    500: "codey failed unexpectedly; its log says why.",
    502: "The model's deployment failed.",
    503: "The engine is overloaded, restarting, or crashed with the request in hand, or every "
    "deployment is busy; see Retry-After.",
    504: "No deployment answered in time.",
}


class _NativeErrorDetail(BaseModel):
    type: str
    message: str


class NativeError(BaseModel):
    success: Literal[False]
    error: _NativeErrorDetail


class _OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(BaseModel):
    error: _OpenAIErrorDetail


class _GoogleErrorDetail(BaseModel):
    code: int
    message: str
    status: str


class VertexError(BaseModel):
    error: _GoogleErrorDetail


ERROR_SCHEMAS: dict[Dialect, type[BaseModel]] = {
    "native": NativeError,
    "openai": OpenAIError,
    "vertex": VertexError,
}


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            document_errors(schema, _routes(app))
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """Every API route with the path it is served at (routers are included with prefixes)."""
    found = []
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and route.include_in_schema and context.path_format:
            found.append((context.path_format, route))
    return found


def statuses_of(route: APIRoute) -> list[int]:
    """Every error status the route can answer."""
    found = {500, *EXTRA.get(route.name, ())}
    if route.body_field is not None:
        found |= {400, 413}
    if any(d.call is principal for d in route.dependant.dependencies):
        found |= {401, 403}
    if route.dependant.query_params or route.dependant.path_params:
        found.add(400)
    return sorted(found)


def document_errors(schema: dict[str, Any], routes: list[tuple[str, APIRoute]]) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in ERROR_SCHEMAS.values():
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(definition.pop("$defs", {}))
        components[model.__name__] = definition
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    for path, route in routes:
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _document(operation, route, dialect_of(path))


def _document(operation: dict[str, Any], route: APIRoute, dialect: Dialect) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMAS[dialect].__name__}"}
    for status in statuses_of(route):
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": reference}},
        }
        if status in (429, 503):
            response["headers"] = {
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer"},
                }
            }
        if route.name == "readyz" and status == 503:
            response = {"description": "Not ready: `checks` and `engine` say why."}
        responses[str(status)] = response
    media = STREAMED.get(route.name)
    if media is not None:
        ok = responses.setdefault("200", {"description": "Successful Response"})
        content = ok.setdefault("content", {})
        if media == "application/json" and "application/json" in content:
            return
        content[media] = {"schema": {"type": "string"}} if media != "application/json" else {}
