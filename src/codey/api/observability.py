"""/metrics for Prometheus, /api/v1/codey/stats for the dashboard, and the dashboard itself."""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from codey.api.calls import gateway_of, principal
from codey.store.batches import BatchStore

router = APIRouter(tags=["observability"])


_PROMETHEUS_TEXT = {"text/plain": {"schema": {"type": "string"}}}


@router.get("/metrics", response_class=Response, responses={200: {"content": _PROMETHEUS_TEXT}})
async def metrics(request: Request) -> Response:
    """Prometheus text format."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/codey/stats")
async def stats(request: Request) -> dict[str, Any]:
    """Latency histograms and percentiles per service today, seven days of totals, the
    latest errors and batch jobs: what the dashboard draws."""
    who = await principal(request)
    gateway = gateway_of(request)
    now = gateway.clock.now()
    today = gateway.quota_day.day(now)
    name = None if who.admin else who.name
    stats = await asyncio.to_thread(gateway.ledger.stats, today, gateway.quota_day, now, name)
    routers = request.app.state.runtime.routers.values()
    stats["deployments"] = [d for router in routers for d in router.status()]
    engines = request.app.state.runtime.engines.values()
    stats["engines"] = [{"model": e.model_id, **e.engine.status()} for e in engines]
    stats["batches"] = await _batches(request.app.state.runtime.batches, name)
    return stats


async def _batches(store: BatchStore, owner: str | None) -> list[dict[str, Any]]:
    """The latest batch jobs of either API, with their progress."""
    jobs = await store.jobs(owner, None, 20)
    counts = await store.counts([j.id for j in jobs])
    return [
        {
            "id": j.id,
            "api": j.kind,
            "endpoint": j.model if j.kind == "vertex" else j.endpoint,
            "status": j.status,
            "created_at": j.created_at,
            "total": counts[j.id].total,
            "completed": counts[j.id].completed,
            "failed": counts[j.id].failed,
        }
        for j in jobs
    ]


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def dashboard() -> HTMLResponse:
    page = resources.files("codey.api").joinpath("dashboard.html").read_text()
    return HTMLResponse(page)
