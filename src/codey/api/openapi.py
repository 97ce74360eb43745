"""The OpenAPI document, told from the same error mapping as the answers themselves.

FastAPI documents 422 for invalid input, but codey answers 400 in each dialect's own error
shape. Here every operation gets the statuses it can answer instead, each with the error schema
of the dialect its path belongs to (`api.errors.dialect_of`), and streaming operations their
streamed media types. Which statuses a route can answer follows from what it is: a body or a
parameter that can be wrong (400, 413, and 415 for a body not sent as JSON), a caller's key
(401), a model or id to look up (404), a job run on a model through the gateway (403, 429, 502,
503 with Retry-After, 504), and always 500.

401 and 403 are documented whether or not this server has keys configured: the document is one
contract for every codey, keys can be turned on without a client being generated again, and
the key is optional in `security` so that an open server is described truthfully too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel

from codey.api.calls import principal
from codey.api.errors import Dialect, dialect_of

_JOB = (403, 429, 502, 503, 504)
EXTRA: dict[str, tuple[int, ...]] = {
    "generate": _JOB,
    "chat": (*_JOB, 404),  # an unknown conversation
    "complete": _JOB,
    "chat_completions": (*_JOB, 404),  # an unknown model
    "completions": (*_JOB, 404),
    "predict": (*_JOB, 404),  # an unknown publisher model
    "server_streaming_predict": (*_JOB, 404),
    "infill": (*_JOB, 404),  # an unknown model
    "tokenize": (404, 502, 503, 504),  # counts on the model's deployment, outside the quotas
    "usage": (403, 404),  # another principal's usage; an unknown principal
    "publisher_model": (404,),
    "stats": (401,),  # reads the key itself, not through a dependency
    # batch jobs and their files: an unknown (or another caller's) file, job or model
    "get_file": (404,),
    "file_content": (404,),
    "delete_file": (404,),
    "create_batch": (404,),
    "retrieve_batch": (404,),
    "cancel_batch": (404,),
    "create_job": (404,),
    "get_job": (404,),
    "cancel_job": (404,),
}
"""Statuses a route can answer besides those its shape implies, by endpoint name."""

_EVENT_STREAM = {
    "description": "With `stream: true`: server-sent events, one `data: <chunk>` per token and "
    "`data: [DONE]` last; a failure after the first token arrives as an error event.",
    # Before OpenAPI 3.2's itemSchema, an event stream's schema describes each event: its fields.
    "schema": {
        "type": "object",
        "required": ["data"],
        "properties": {
            "data": {"type": "string"},
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    },
}
_PREDICTION_ARRAY = {
    "description": "A JSON array of `{outputs: [Tensor]}`, streamed element by element; a "
    "failure after the first element ends it with an error element.",
    "schema": {
        "type": "array",
        "items": {
            "anyOf": [
                {
                    "type": "object",
                    "required": ["outputs"],
                    "properties": {"outputs": {"type": "array", "items": {"type": "object"}}},
                },
                {"$ref": "#/components/schemas/VertexError"},
            ]
        },
    },
}
_INFILL_STREAM = {
    "description": "With `stream: true`: server-sent events as llama.cpp's server sends them, "
    "one `data: <result>` per piece of text (`stop: false`), then the whole result with "
    "`stop: true`, and no [DONE]. Otherwise one result object, or an array of them for "
    "`n_cmpl` > 1.",
    "schema": _EVENT_STREAM["schema"],
}
STREAMED: dict[str, tuple[str, dict[str, Any]]] = {
    "chat_completions": ("text/event-stream", _EVENT_STREAM),
    "completions": ("text/event-stream", _EVENT_STREAM),
    "infill": ("text/event-stream", _INFILL_STREAM),
    "server_streaming_predict": ("application/json", _PREDICTION_ARRAY),
}
"""The success media type of a streaming route, which its own declaration cannot state."""

_DESCRIPTIONS = {
    400: "Invalid input: an empty or out-of-range field, malformed JSON, or a prompt longer "
    "than the context window; the message names the field.",
    401: "No API key, or one this server does not know.",
    403: "The key may not use this service, or read another principal's usage.",
    404: "An unknown model, conversation, principal, publisher model, file or batch job.",
    413: "The request body is larger than the server's limit.",
    415: "A body sent with a Content-Type other than JSON (a form, plain text, ...).",
    429: "Over the daily quota, a daily budget or the per-minute limit; see Retry-After.",
    500: "codey failed unexpectedly; its log says why.",
    502: "The model's deployment failed.",
    503: "The engine is overloaded, restarting, or crashed with the request in hand, or every "
    "deployment is busy; see Retry-After.",
    504: "No deployment answered in time.",
}
_RETRY_AFTER = {
    "Retry-After": {
        "description": "Whole seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}
SECURITY_SCHEMES = {
    "bearer": {"type": "http", "scheme": "bearer"},
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "googApiKey": {"type": "apiKey", "in": "header", "name": "x-goog-api-key"},
}
# Any one key, or none on a server without keys.
_SECURITY: list[dict[str, list[str]]] = [{}] + [{name: []} for name in SECURITY_SCHEMES]


class NativeErrorDetail(BaseModel):
    type: str
    message: str


class NativeError(BaseModel):
    success: Literal[False]
    error: NativeErrorDetail


class OpenAIErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None
    code: str


class OpenAIError(BaseModel):
    error: OpenAIErrorDetail


class VertexErrorDetail(BaseModel):
    code: int
    message: str
    status: str


class VertexError(BaseModel):
    error: VertexErrorDetail


ERROR_SCHEMAS: dict[Dialect, type[BaseModel]] = {
    "native": NativeError,
    "openai": OpenAIError,
    "vertex": VertexError,
}


def install(app: FastAPI) -> None:
    """Serve FastAPI's document, corrected, at /openapi.json (built once, on first request)."""
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()  # FastAPI's own, cached in app.openapi_schema
            document_errors(schema, _routes(app))
        return app.openapi_schema or {}

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
    dependant = route.dependant
    if route.body_field is not None:
        found |= {400, 413, 415}
    if "POST" in (route.methods or ()):
        found.add(413)  # the body limit stands in front of every route
    if any(d.call is principal for d in dependant.dependencies):
        found.add(401)
    # A plain string in the path always validates; anything else may not.
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        found.add(400)
    if any(p.field_info.annotation is not str for p in dependant.path_params):
        found.add(400)
    return sorted(found)


def document_errors(schema: dict[str, Any], routes: list[tuple[str, APIRoute]]) -> None:
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in ERROR_SCHEMAS.values():
        definition = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(definition.pop("$defs", {}))
        schemas[model.__name__] = definition
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    components["securitySchemes"] = SECURITY_SCHEMES
    for path, route in routes:
        for method in route.methods or ():
            operation = schema["paths"].get(path, {}).get(method.lower())
            if operation is not None:
                _document(operation, route, dialect_of(path))


def _document(operation: dict[str, Any], route: APIRoute, dialect: Dialect) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    responses.pop("422", None)
    declared = {str(status) for status in route.responses}  # a route's own word wins
    reference = {"$ref": f"#/components/schemas/{ERROR_SCHEMAS[dialect].__name__}"}
    for status in statuses_of(route):
        if str(status) in declared:
            continue
        response: dict[str, Any] = {
            "description": _DESCRIPTIONS[status],
            "content": {"application/json": {"schema": reference}},
        }
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[str(status)] = response
    if "401" in responses:
        operation["security"] = _SECURITY
    if route.name in STREAMED:
        media, documented = STREAMED[route.name]
        ok = responses.setdefault("200", {"description": "Successful Response"})
        content = ok.setdefault("content", {})
        if media == "application/json" and content.get(media, {}).get("schema"):
            return  # a declared response model says more
        content[media] = {"schema": documented["schema"]}
        ok["description"] = f"{ok['description']}. {documented['description']}"
