"""Response cache: an in-memory LRU in front of a persistent tier (SQLite, or Redis when
replicas share it). Keys are SHA-256 digests of the normalised request."""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any, Protocol

import redis.asyncio as aioredis
from cachetools import LRUCache

from codey.store.sqlite import Database

Value = dict[str, Any]
_OFF_LOOP_BYTES = 64 * 1024


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
    def __init__(self, db: Database) -> None:
        self._db = db

    def _get(self, key: str) -> Value | None:
        with self._db.transaction() as conn:
            row = conn.execute(
                "SELECT value, expires_at FROM response_cache WHERE key = ?", (key,)
            ).fetchone()
            if row is None:
                return None
            if row["expires_at"] <= time.time():
                conn.execute("DELETE FROM response_cache WHERE key = ?", (key,))
                return None
        return json.loads(row["value"])

    def _put(self, key: str, service: str, value: Value, ttl: float) -> None:
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO response_cache (key, service, value, expires_at) "
                "VALUES (?, ?, ?, ?)",
                (key, service, json.dumps(value), time.time() + ttl),
            )

    async def get(self, key: str) -> Value | None:
        return await asyncio.to_thread(self._get, key)

    async def put(self, key: str, service: str, value: Value, ttl: float) -> None:
        await asyncio.to_thread(self._put, key, service, value, ttl)


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
