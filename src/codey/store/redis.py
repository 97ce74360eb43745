"""The shared Redis connection of a replica."""

from __future__ import annotations

import redis.asyncio as aioredis


def connect(url: str, max_connections: int = 64) -> aioredis.Redis:
    """A client whose pool makes a burst of requests wait for a connection instead of failing
    (redis-py's default pool raises past 100 connections)."""
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=30
    )
    return aioredis.Redis(connection_pool=pool)
