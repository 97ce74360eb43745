"""Usage against quota, per service, for a principal and a day."""

from __future__ import annotations

import asyncio
from typing import Any

from codey.config import Service
from codey.gateway.auth import ALL_SERVICES, Principal
from codey.gateway.pipeline import Gateway


async def usage_report(gateway: Gateway, principal: Principal, day: str | None) -> dict[str, Any]:
    """Requests, quota, remaining, requests in the last minute, cache hit rate, tokens,
    characters and cost per service; batch lines apart, under each service's `batch`."""
    day = day or gateway.quota_day.day(gateway.clock.now())
    totals = await asyncio.to_thread(gateway.ledger.by_service, day, principal.name)
    batches = await asyncio.to_thread(gateway.ledger.by_service, day, principal.name, batch=True)
    services: dict[str, Any] = {}
    for service in sorted(ALL_SERVICES):
        limits = gateway.limits_for(principal, service)
        counters = await gateway.counters.get(
            gateway.counter_key(principal.name, service, day, False)
        )
        t = totals.get(service, {})
        served = t.get("succeeded", 0)
        quota = limits.requests_per_day
        services[service] = {
            "requests": served,
            "rejected": t.get("rejected", 0),
            "failed": t.get("failed", 0),
            "quota": quota,
            "remaining": None if quota is None else max(quota - counters["requests"], 0),
            "requests_per_minute_limit": limits.requests_per_minute,
            "requests_last_minute": await gateway.limiter.in_last_minute(
                principal.name, service, limits.requests_per_minute
            ),
            **_spent(t),
            "batch": await _batch(gateway, principal, service, day, batches.get(service, {})),
        }
    return {
        "day": day,
        "timezone": gateway.settings.limits.timezone,
        "principal": principal.name,
        "services": services,
    }


def _spent(t: dict[str, Any]) -> dict[str, Any]:
    served = t.get("succeeded", 0)
    return {
        "cache_hit_rate": round(t.get("cache_hits", 0) / served, 4) if served else 0.0,
        "prompt_tokens": t.get("prompt_tokens", 0),
        "completion_tokens": t.get("completion_tokens", 0),
        "input_characters": t.get("input_chars", 0),
        "output_characters": t.get("output_chars", 0),
        "cost_usd": round(t.get("cost_usd", 0.0), 8),
    }


async def _batch(
    gateway: Gateway, principal: Principal, service: Service, day: str, t: dict[str, Any]
) -> dict[str, Any]:
    """A service's batch lines of the day against the batch quota."""
    quota = gateway.batch_quota(service)
    used = await gateway.counters.get(gateway.counter_key(principal.name, service, day, True))
    return {
        "requests": t.get("succeeded", 0),
        "rejected": t.get("rejected", 0),
        "failed": t.get("failed", 0),
        "quota": quota,
        "remaining": None if quota is None else max(quota - used["requests"], 0),
        **_spent(t),
    }
