"""How a route calls a service: through the gateway, cancelled if the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from codey.backends.base import Delta
from codey.errors import Cancelled
from codey.gateway.auth import Principal, key_from_headers
from codey.gateway.pipeline import Answer, Call, Gateway

T = TypeVar("T")


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


async def principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, from its API key."""
    return gateway_of(request).keyring.principal(key_from_headers(request.headers))


def new_call(
    request: Request,
    who: Principal,
    service: str,
    dialect: str,
    model: str,
    input_text: str,
    cache_request: dict[str, Any] | None = None,
    deterministic: bool = True,
) -> Call:
    """A gateway call, with the client's Cache-Control directives."""
    directives = {d.strip().lower() for d in request.headers.get("cache-control", "").split(",")}
    return Call(
        who,
        service,
        dialect,
        model,
        input_text,
        cache_request,
        deterministic,
        no_cache="no-cache" in directives,
        no_store="no-store" in directives,
    )


async def serve(
    request: Request, call: Call, work: Callable[[], Awaitable[Answer]], *, native: bool = False
) -> JSONResponse:
    """Run `work` through the gateway and render its answer; a cache hit says so in the
    x-codey-cache header (and in `cached` in the native dialect)."""
    answer, cached = await until_disconnect(request, gateway_of(request).run(call, work))
    body = dict(answer.body)
    if native:
        body["cached"] = cached
    return JSONResponse(body, headers={"x-codey-cache": "hit" if cached else "miss"})


async def until_disconnect(request: Request, work: Awaitable[T]) -> T:
    """Await `work` unless the client disconnects first; then cancel it, which frees the
    engine within a token."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task not in done:
        task.cancel()
        raise Cancelled("The client disconnected.")
    return task.result()


async def metered(
    request: Request, call: Call, deltas: AsyncIterator[Delta]
) -> AsyncGenerator[Delta, None]:
    """Admit a streamed call through the gateway and hand back its deltas, ending with the one
    that carries the finish reason; the gateway hears how it ended (completed, failed, or the
    client gone) and the engine stream is closed in every case.

    The first delta is pulled before this returns, so that bad input and a refused quota still
    get a proper error status instead of a broken stream. Iterate the result to its end, or
    close it (contextlib.aclosing)."""
    gateway = gateway_of(request)
    ticket = await gateway.admit(call)
    try:
        first, rest = await first_and_rest(deltas)
    except BaseException as exc:
        await gateway.fail(ticket, exc)
        raise

    async def relay() -> AsyncGenerator[Delta, None]:
        delta, text = first, ""
        try:
            while True:
                text += delta.text
                yield delta
                if delta.finish_reason is not None:
                    break
                delta = await anext(rest)
        except BaseException as exc:
            await gateway.fail(ticket, exc)
            raise
        finally:
            await rest.aclose()  # type: ignore[attr-defined]
        answer = Answer({}, delta.prompt_tokens, delta.completion_tokens, text)
        await gateway.complete(ticket, answer)

    return relay()


async def first_and_rest(stream: AsyncIterator[T]) -> tuple[T, AsyncIterator[T]]:
    """Pull the first item before the response starts, so that bad input still gets a proper
    error status instead of a broken stream."""
    first = await anext(stream)
    return first, stream


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
