"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

router = APIRouter(tags=["health"])


class Readiness(BaseModel):
    """What /readyz answers, ready (200) or not (503)."""

    status: Literal["ready", "not ready"]
    checks: dict[str, bool]
    """model, store and, with an embedded model, engine: each true when it is ready."""
    engine: dict[str, Any] | None = None
    """What the embedded engine is doing and, when it is not ready, why."""


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready: `checks` say which part."}},
)
async def readyz(request: Request) -> JSONResponse:
    """The model is loaded, the engine process is up, and the store answers; `engine` says
    what the engine is doing and, when it is not ready, why."""
    runtime = getattr(request.app.state, "runtime", None)
    checks = {"model": runtime is not None, "store": False}
    body: dict[str, Any] = {}
    if runtime is not None:
        try:
            await asyncio.to_thread(runtime.database.ping)
            checks["store"] = True
        except Exception:
            checks["store"] = False
        if runtime.engines:
            checks["engine"] = all(e.engine.state == "ready" for e in runtime.engines.values())
            body["engine"] = runtime.engines[next(iter(runtime.engines))].engine.status()
            body["engines"] = {e.model_id: e.engine.status() for e in runtime.engines.values()}
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not ready", "checks": checks, **body}
    return JSONResponse(body, status_code=200 if ready else 503)
