"""Daily counters against real SQLite and a real Redis: exact under concurrency."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from codey.gateway.counters import Counters, RedisCounters, SQLiteCounters
from codey.store.redis import connect
from codey.store.sqlite import Database

REDIS_URL = "redis://127.0.0.1:6379/0"


@pytest.fixture(params=["sqlite", "redis"])
async def counters(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Counters]:
    if request.param == "sqlite":
        db = Database(tmp_path / "c.db")
        yield SQLiteCounters(db)
        db.close()
    else:
        client = connect(REDIS_URL)
        yield RedisCounters(client, prefix=f"test:{uuid.uuid4().hex}:")
        await client.aclose()


async def test_200_concurrent_admits_against_a_limit_of_50(counters: Counters) -> None:
    results = await asyncio.gather(*(counters.admit("k", 50) for _ in range(200)))
    assert sum(admitted for admitted, _ in results) == 50
    assert max(used for _, used in results) == 50
    assert (await counters.get("k"))["requests"] == 50


async def test_a_refund_frees_one_request_and_never_goes_below_zero(counters: Counters) -> None:
    assert await counters.admit("k", 1) == (True, 1)
    assert await counters.admit("k", 1) == (False, 1)
    await counters.add("k", {"requests": -1})
    assert await counters.admit("k", 1) == (True, 1)
    await counters.add("k", {"requests": -5})
    assert (await counters.get("k"))["requests"] == 0


async def test_no_limit_counts_without_refusing(counters: Counters) -> None:
    results = await asyncio.gather(*(counters.admit("k", None) for _ in range(10)))
    assert all(admitted for admitted, _ in results)
    assert (await counters.get("k"))["requests"] == 10


async def test_characters_and_tokens_add_up(counters: Counters) -> None:
    await counters.add("k", {"input_chars": 10, "output_chars": 4, "tokens": 7})
    await counters.add("k", {"input_chars": 1, "tokens": 3})
    assert await counters.get("k") == {
        "requests": 0,
        "input_chars": 11,
        "output_chars": 4,
        "tokens": 10,
    }


async def test_sqlite_counters_survive_reopening(tmp_path: Path) -> None:
    db = Database(tmp_path / "c.db")
    for _ in range(3):
        await SQLiteCounters(db).admit("k", 20)
    db.close()
    reopened = Database(tmp_path / "c.db")
    assert (await SQLiteCounters(reopened).get("k"))["requests"] == 3
