"""The in-process moving window, with an injected clock: exactly `limit` per 60 s, and the
wait until a slot frees."""

from __future__ import annotations

import random
import time

import pytest

from codey.errors import RateLimited
from codey.gateway.ratelimit import MemoryWindow, PerMinuteLimiter


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


async def test_admits_exactly_the_limit_within_a_minute() -> None:
    clock = FakeClock()
    window = MemoryWindow(clock)
    for _ in range(5):
        assert await window.take("team", "chat", 5) == 0
        clock.now += 1  # taken at 1000, 1001, ..., 1004
    assert await window.take("team", "chat", 5) == pytest.approx(55)  # 1000 + 60 - 1005
    clock.now = 1059.999
    assert await window.take("team", "chat", 5) == pytest.approx(0.001)
    assert await window.count("team", "chat", 5) == 5
    clock.now = 1060  # the first slot is 60 s old: free
    assert await window.take("team", "chat", 5) == 0
    assert await window.take("team", "chat", 5) == pytest.approx(1)  # the second frees at 1061
    assert await window.count("team", "chat", 5) == 5
    clock.now = 2000
    assert await window.count("team", "chat", 5) == 0


async def test_principals_and_services_have_their_own_windows() -> None:
    window = MemoryWindow(FakeClock())
    assert await window.take("a", "chat", 1) == 0
    assert await window.take("a", "chat", 1) > 0
    assert await window.take("b", "chat", 1) == 0
    assert await window.take("a", "completion", 1) == 0


async def test_matches_a_brute_force_count_over_random_arrivals() -> None:
    clock = FakeClock(0.0)
    window = MemoryWindow(clock)
    rng = random.Random(7)
    admitted: list[float] = []
    for _ in range(3000):
        clock.now += rng.expovariate(1.0)  # about one a second against 30 a minute
        in_window = [t for t in admitted if t > clock.now - 60]
        wait = await window.take("p", "s", 30)
        if len(in_window) < 30:
            assert wait == 0
            admitted.append(clock.now)
        else:
            assert wait == pytest.approx(in_window[-30] + 60 - clock.now)


async def test_refuses_past_the_wait_budget_with_whole_seconds() -> None:
    clock = FakeClock()
    limiter = PerMinuteLimiter(wait_seconds=0, clock=clock)
    for _ in range(3):
        assert await limiter.acquire("team", "chat", 3) == 0
    clock.now += 20.5
    with pytest.raises(RateLimited, match="3 requests per minute for chat") as refused:
        await limiter.acquire("team", "chat", 3)
    assert refused.value.retry_after == 40  # 39.5 s, rounded up
    assert await limiter.in_last_minute("team", "chat", 3) == 3
    assert await limiter.acquire("team", "chat", None) == 0
    assert await limiter.in_last_minute("team", "chat", None) == 0


async def test_waits_for_a_slot_within_the_budget() -> None:
    offset = 0.0
    limiter = PerMinuteLimiter(wait_seconds=1, clock=lambda: time.monotonic() + offset)
    await limiter.acquire("team", "chat", 1)
    offset = 59.8  # the slot frees in 0.2 s of real time
    waited = await limiter.acquire("team", "chat", 1)
    assert 0.15 < waited < 1
    assert await limiter.in_last_minute("team", "chat", 1) == 1
