"""Daily counters per principal, service and day: SQLite (durable) or Redis (shared).

`admit` is the one operation that must be exact under concurrency: it increments the request
count only while it is under the limit, atomically (the SQLite writer thread, a Lua script).
"""

from __future__ import annotations

import sqlite3
from typing import Protocol

import redis.asyncio as aioredis

from codey.store.sqlite import Database

REQUESTS = "requests"
FIELDS = ("requests", "input_chars", "output_chars", "tokens")


class Counters(Protocol):
    async def admit(self, key: str, limit: int | None) -> tuple[bool, int]:
        """Count one more request unless `limit` is reached; say whether it was counted, and
        how many are counted now."""
        ...

    async def add(self, key: str, amounts: dict[str, int]) -> None:
        """Add to counters (a negative request count is a refund)."""
        ...

    async def get(self, key: str) -> dict[str, int]: ...


class SQLiteCounters:
    """The counters in SQLite, written by the database's writer thread: exact because one
    thread runs every admission, durable because each call returns after its commit."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def admit(self, key: str, limit: int | None) -> tuple[bool, int]:
        return await self._db.transact(lambda conn: _admit(conn, key, limit))

    async def add(self, key: str, amounts: dict[str, int]) -> None:
        changes = [(f, n) for f, n in amounts.items() if n]
        if changes:
            await self._db.transact(lambda conn: _add(conn, key, changes))

    async def get(self, key: str) -> dict[str, int]:
        return await self._db.transact(lambda conn: _get(conn, key))


def _admit(conn: sqlite3.Connection, key: str, limit: int | None) -> tuple[bool, int]:
    conn.execute(
        "INSERT OR IGNORE INTO quota_counters (key, field, value) VALUES (?, ?, 0)",
        (key, REQUESTS),
    )
    cursor = conn.execute(
        "UPDATE quota_counters SET value = value + 1 "
        "WHERE key = ? AND field = ? AND (? IS NULL OR value < ?)",
        (key, REQUESTS, limit, limit),
    )
    used = conn.execute(
        "SELECT value FROM quota_counters WHERE key = ? AND field = ?", (key, REQUESTS)
    ).fetchone()[0]
    return cursor.rowcount == 1, used


def _add(conn: sqlite3.Connection, key: str, changes: list[tuple[str, int]]) -> None:
    conn.executemany(
        "INSERT OR IGNORE INTO quota_counters (key, field, value) VALUES (?, ?, 0)",
        [(key, f) for f, _ in changes],
    )
    conn.executemany(
        "UPDATE quota_counters SET value = max(value + ?, 0) WHERE key = ? AND field = ?",
        [(n, key, f) for f, n in changes],
    )


def _get(conn: sqlite3.Connection, key: str) -> dict[str, int]:
    rows = conn.execute("SELECT field, value FROM quota_counters WHERE key = ?", (key,))
    return {f: 0 for f in FIELDS} | {r["field"]: r["value"] for r in rows}


_ADMIT = """
local used = tonumber(redis.call('HGET', KEYS[1], 'requests') or '0')
if ARGV[1] ~= '' and used >= tonumber(ARGV[1]) then return {0, used} end
used = redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('EXPIRE', KEYS[1], ARGV[2])
return {1, used}
"""
_ADD = """
for i = 1, #ARGV - 1, 2 do
  local value = redis.call('HINCRBY', KEYS[1], ARGV[i], ARGV[i + 1])
  if value < 0 then redis.call('HSET', KEYS[1], ARGV[i], 0) end
end
redis.call('EXPIRE', KEYS[1], 172800)
return 1
"""


class RedisCounters:
    """The same counters in Redis hashes, shared by every replica; they expire after 2 days."""

    def __init__(self, client: aioredis.Redis, prefix: str = "codey:quota:") -> None:
        self._client = client
        self._prefix = prefix
        self._admit = client.register_script(_ADMIT)
        self._add = client.register_script(_ADD)

    async def admit(self, key: str, limit: int | None) -> tuple[bool, int]:
        args = ["" if limit is None else str(limit), "172800"]
        admitted, used = await self._admit(keys=[self._prefix + key], args=args)
        return bool(admitted), int(used)

    async def add(self, key: str, amounts: dict[str, int]) -> None:
        args = [x for f, n in amounts.items() if n for x in (f, str(n))]
        if args:
            await self._add(keys=[self._prefix + key], args=args)

    async def get(self, key: str) -> dict[str, int]:
        raw = await self._client.hgetall(self._prefix + key)
        values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
        return {f: 0 for f in FIELDS} | values
