"""How a route hands its job to the gateway: as a Call with its caller, its canonical model and
the client's Cache-Control, cancelled if the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import JSONResponse

from codey.api.models import resolve_model
from codey.backends.base import Delta
from codey.errors import Cancelled
from codey.gateway.auth import Principal, key_from_headers
from codey.gateway.job import Job
from codey.gateway.pipeline import Call, Gateway
from codey.store.batches import BatchStore

T = TypeVar("T")


def gateway_of(request: Request) -> Gateway:
    return request.app.state.gateway


def batches_of(request: Request) -> BatchStore:
    """Where batch jobs and their files are kept."""
    store: BatchStore = request.app.state.runtime.batches
    return store


async def principal(request: Request) -> Principal:
    """FastAPI dependency: the caller, from its API key."""
    return gateway_of(request).keyring.principal(key_from_headers(request.headers))


def call_of(request: Request, who: Principal, job: Job) -> Call:
    """The gateway's view of a job: its caller, its model by its one name, and the client's
    Cache-Control directives."""
    directives = {d.strip().lower() for d in request.headers.get("cache-control", "").split(",")}
    return Call(
        who,
        job,
        resolve_model(request, job.service, job.asked_model()),
        no_cache="no-cache" in directives,
        no_store="no-store" in directives,
    )


async def serve(request: Request, who: Principal, job: Job) -> JSONResponse:
    """Run the job through the gateway and render its answer; a cache hit says so in the
    x-codey-cache header (and in `cached` in the native dialect)."""
    gateway = gateway_of(request)
    answer, cached = await until_disconnect(request, gateway.serve(call_of(request, who, job)))
    body = dict(answer.body)
    if job.dialect == "native":
        body["cached"] = cached
    return JSONResponse(body, headers={"x-codey-cache": "hit" if cached else "miss"})


async def stream(request: Request, who: Principal, job: Job) -> AsyncGenerator[Delta, None]:
    """The job's deltas through the gateway, the first one already pulled (see
    `Gateway.stream`)."""
    return await gateway_of(request).stream(call_of(request, who, job))


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


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
