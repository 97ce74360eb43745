"""Peak requests per minute, per principal and service: an exact moving window.

The `limits` library keeps the window in memory (one replica) or in Redis through its Lua
scripts (every replica counts against the same window).
"""

from __future__ import annotations

import asyncio
import math
import time

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter

from codey.errors import RateLimited


class PerMinuteLimiter:
    """Admits a request when its principal has had fewer than `limit` in the last 60 s."""

    def __init__(self, redis_url: str | None = None, *, wait_seconds: float = 10.0) -> None:
        storage: Storage = (
            RedisStorage(f"async+{redis_url}", implementation="redispy", key_prefix="codey:rpm")
            if redis_url
            else MemoryStorage()
        )
        self._limiter = MovingWindowRateLimiter(storage)
        self.wait_seconds = wait_seconds

    async def acquire(self, principal: str, service: str, limit: int | None) -> float:
        """Take a slot, waiting for one while it frees within the wait budget; return the
        seconds waited. Raise RateLimited with the whole seconds until a slot frees."""
        if limit is None:
            return 0.0
        item = RateLimitItemPerMinute(limit)
        started = time.monotonic()
        while not await self._limiter.hit(item, principal, service):
            reset, _ = await self._limiter.get_window_stats(item, principal, service)
            wait = max(reset - time.time(), 0.001)
            if wait > self.wait_seconds:
                raise RateLimited(
                    f"{principal} is over its {limit} requests per minute for {service}.",
                    retry_after=max(1, math.ceil(wait)),
                )
            await asyncio.sleep(wait + 0.01)
        return time.monotonic() - started

    async def in_last_minute(self, principal: str, service: str, limit: int | None) -> int:
        if limit is None:
            return 0
        item = RateLimitItemPerMinute(limit)
        _, remaining = await self._limiter.get_window_stats(item, principal, service)
        return limit - remaining
