"""The one way a route calls a service: counted, and cancelled if the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable
from typing import Protocol, TypeVar

from fastapi import Request

from codey.errors import Cancelled, CodeyError
from codey.gateway.usage import Service, UsageTally

T = TypeVar("T")


class Counted(Protocol):
    prompt_tokens: int
    completion_tokens: int


async def call_service(request: Request, service: Service, work: Awaitable[T]) -> T:
    """Await `work` unless the client disconnects first; then cancel it, which frees the
    engine within a token."""
    tally: UsageTally = request.app.state.usage
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
    if task not in done:
        task.cancel()
        tally.record(service, ok=False)
        raise Cancelled("The client disconnected.")
    try:
        result = task.result()
    except CodeyError:
        tally.record(service, ok=False)
        raise
    counted: Counted = result  # type: ignore[assignment]
    tally.record(
        service,
        ok=True,
        prompt_tokens=counted.prompt_tokens,
        completion_tokens=counted.completion_tokens,
    )
    return result


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
