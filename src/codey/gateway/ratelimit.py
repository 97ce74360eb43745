"""Peak requests per minute, per principal and service: an exact moving window.

One replica keeps its window itself: a deque of the times of the last minute's admissions per
principal and service, O(1) amortised a request and no thread. `limits`' in-memory moving
window was measured at 9% of the gateway's CPU in front of an instant upstream: its async
storage hands every hit to a thread and copies the whole minute of entries (16k at 270
requests/s) on each one. Replicas sharing Redis use `limits`' Redis moving window (Lua scripts),
so that every replica counts against the same window, exactly.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.aio.storage import RedisStorage
from limits.aio.strategies import MovingWindowRateLimiter

from codey.errors import RateLimited

WINDOW_SECONDS = 60.0


class Window(Protocol):
    async def take(self, principal: str, service: str, limit: int) -> float:
        """Take a slot and return 0, or return the seconds until one frees."""
        ...

    async def count(self, principal: str, service: str, limit: int) -> int:
        """Slots taken in the last minute."""
        ...


class MemoryWindow:
    """The window of one process; `clock` gives monotonic seconds. Limits are at least 1."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._taken: dict[tuple[str, str], deque[float]] = {}

    def _recent(self, principal: str, service: str, now: float) -> deque[float]:
        """The times of the slots taken in the minute before `now`, oldest first."""
        taken = self._taken.get((principal, service))
        if taken is None:
            taken = self._taken[principal, service] = deque()
        while taken and taken[0] <= now - WINDOW_SECONDS:
            taken.popleft()
        return taken

    async def take(self, principal: str, service: str, limit: int) -> float:
        now = self._clock()
        taken = self._recent(principal, service, now)
        if len(taken) < limit:
            taken.append(now)
            return 0.0
        # A slot frees when all but limit - 1 have left the window: with `limit` taken (the
        # most there can be, unless the limit was lowered), when the oldest turns 60 s old.
        return taken[-limit] + WINDOW_SECONDS - now

    async def count(self, principal: str, service: str, limit: int) -> int:
        return len(self._recent(principal, service, self._clock()))


class RedisWindow:
    """The window shared by every replica, in Redis."""

    def __init__(self, redis_url: str) -> None:
        storage = RedisStorage(
            f"async+{redis_url}", implementation="redispy", key_prefix="codey:rpm"
        )
        self._limiter = MovingWindowRateLimiter(storage)

    async def take(self, principal: str, service: str, limit: int) -> float:
        item = RateLimitItemPerMinute(limit)
        if await self._limiter.hit(item, principal, service):
            return 0.0
        reset, _ = await self._limiter.get_window_stats(item, principal, service)
        return max(reset - time.time(), 0.001)

    async def count(self, principal: str, service: str, limit: int) -> int:
        item = RateLimitItemPerMinute(limit)
        _, remaining = await self._limiter.get_window_stats(item, principal, service)
        return limit - remaining


class PerMinuteLimiter:
    """Admits a request when its principal has had fewer than `limit` in the last 60 s."""

    def __init__(
        self,
        redis_url: str | None = None,
        *,
        wait_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window: Window = RedisWindow(redis_url) if redis_url else MemoryWindow(clock)
        self.wait_seconds = wait_seconds

    async def acquire(self, principal: str, service: str, limit: int | None) -> float:
        """Take a slot, waiting for one while it frees within the wait budget; return the
        seconds waited. Raise RateLimited with the whole seconds until a slot frees."""
        if limit is None:
            return 0.0
        wait = await self._window.take(principal, service, limit)
        if wait == 0:
            return 0.0
        started = time.monotonic()
        while wait > 0:
            if wait > self.wait_seconds:
                raise RateLimited(
                    f"{principal} is over its {limit} requests per minute for {service}.",
                    retry_after=max(1, math.ceil(wait)),
                )
            await asyncio.sleep(wait + 0.01)
            wait = await self._window.take(principal, service, limit)
        return time.monotonic() - started

    async def in_last_minute(self, principal: str, service: str, limit: int | None) -> int:
        if limit is None:
            return 0
        return await self._window.count(principal, service, limit)
