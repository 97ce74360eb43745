"""Response cache: an in-memory LRU in front of a persistent tier (SQLite, or Redis when
replicas share it). Keys are SHA-256 digests of the normalised request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
import time
from collections.abc import Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from cachetools import LRUCache

from codey.store.sqlite import Database

Value = dict[str, Any]
_OFF_LOOP_BYTES = 64 * 1024
_SWEEP_FROM = 4096


async def cache_key(service: str, model: str, request: dict[str, Any]) -> str:
    """SHA-256 of the service, model and normalised request; big prompts hash off the loop."""
    canonical = json.dumps(
        {"service": service, "model": model, "request": request},
        sort_keys=True,
        ensure_ascii=False,
        separators=(",", ":"),
    ).encode()
    if len(canonical) > _OFF_LOOP_BYTES:
        return await asyncio.to_thread(lambda: hashlib.sha256(canonical).hexdigest())
    return hashlib.sha256(canonical).hexdigest()


class Tier(Protocol):
    async def get(self, key: str) -> Value | None: ...
    async def put(self, key: str, service: str, value: Value, ttl: float) -> None: ...


class MemoryTier:
    def __init__(self, entries: int) -> None:
        self._entries: LRUCache[str, tuple[float, Value]] = LRUCache(maxsize=entries)

    async def get(self, key: str) -> Value | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires_at, value = found
        if expires_at <= time.time():
            self._entries.pop(key, None)
            return None
        return value

    async def put(self, key: str, service: str, value: Value, ttl: float) -> None:
        self._entries[key] = (time.time() + ttl, value)


class SQLiteTier:
    """The persistent tier on one machine.

    It keeps in memory the keys it holds, with their expiry times, so that a miss on a key it
    never stored (most lookups) costs no trip to the database thread. A key that another
    process stores in the same file after this one has started is therefore a miss here,
    never a wrong answer: a known key is always read back from the file, its expiry checked
    there too. About 200 bytes a key; expired keys are swept out, with their rows, whenever
    the map has doubled since the last sweep (amortised O(1) a put).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        with db.transaction() as conn:  # once, at start: drop what has expired, learn the rest
            conn.execute("DELETE FROM response_cache WHERE expires_at <= ?", (time.time(),))
            rows = conn.execute("SELECT key, expires_at FROM response_cache").fetchall()
        self._expiry: dict[str, float] = {r["key"]: r["expires_at"] for r in rows}
        self._sweep_at = max(_SWEEP_FROM, 2 * len(self._expiry))

    async def get(self, key: str) -> Value | None:
        expires_at = self._expiry.get(key)
        if expires_at is None:
            return None
        now = time.time()
        if expires_at <= now:
            del self._expiry[key]  # its row goes at the next sweep, or a put replaces it
            return None
        value = await self._db.transact(lambda conn: _read(conn, key, now))
        if value is None:
            self._expiry.pop(key, None)  # another process removed or shortened it
        return value

    async def put(self, key: str, service: str, value: Value, ttl: float) -> None:
        expires_at = time.time() + ttl
        purge_before = self._sweep()
        await self._db.transact(
            lambda conn: _write(conn, key, service, value, expires_at, purge_before)
        )
        self._expiry[key] = expires_at  # known once committed, so a lookup finds the row

    def _sweep(self) -> float | None:
        """Forget expired keys once the map has doubled; return the time before which the
        rows are to be deleted too, or None."""
        if len(self._expiry) < self._sweep_at:
            return None
        now = time.time()
        self._expiry = {k: t for k, t in self._expiry.items() if t > now}
        self._sweep_at = max(_SWEEP_FROM, 2 * len(self._expiry))
        return now


def _read(conn: sqlite3.Connection, key: str, now: float) -> Value | None:
    row = conn.execute(
        "SELECT value FROM response_cache WHERE key = ? AND expires_at > ?", (key, now)
    ).fetchone()
    return None if row is None else json.loads(row["value"])


def _write(
    conn: sqlite3.Connection,
    key: str,
    service: str,
    value: Value,
    expires_at: float,
    purge_before: float | None,
) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO response_cache (key, service, value, expires_at) "
        "VALUES (?, ?, ?, ?)",
        (key, service, json.dumps(value), expires_at),
    )
    if purge_before is not None:
        conn.execute("DELETE FROM response_cache WHERE expires_at <= ?", (purge_before,))


class RedisTier:
    def __init__(self, client: aioredis.Redis, prefix: str = "codey:cache:") -> None:
        self._client = client
        self._prefix = prefix

    async def get(self, key: str) -> Value | None:
        raw = await self._client.get(self._prefix + key)
        return None if raw is None else json.loads(raw)

    async def put(self, key: str, service: str, value: Value, ttl: float) -> None:
        await self._client.set(self._prefix + key, json.dumps(value), px=max(1, int(ttl * 1000)))


class ResponseCache:
    """Looks in each tier in order and fills the faster ones on a hit in a slower one."""

    def __init__(self, tiers: list[Tier], ttl_seconds: Mapping[Any, int]) -> None:
        self._tiers = tiers
        self._ttl = ttl_seconds

    async def get(self, key: str, service: str) -> Value | None:
        for i, tier in enumerate(self._tiers):
            value = await tier.get(key)
            if value is not None:
                for faster in self._tiers[:i]:
                    await faster.put(key, service, value, self._ttl.get(service, 3600))
                return value
        return None

    async def put(self, key: str, service: str, value: Value) -> None:
        for tier in self._tiers:
            await tier.put(key, service, value, self._ttl.get(service, 3600))
