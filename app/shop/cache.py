"""Caching: a short in-process TTL cache in front of Redis, and the Redis client factory."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from shop import metrics
from shop.settings import Settings


def create_redis(settings: Settings) -> aioredis.Redis:
    """A Redis client whose pool waits for a free connection instead of failing at its limit."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=5,
        password=password,
        socket_connect_timeout=5,
    )
    return aioredis.Redis(connection_pool=pool)


class LocalCache:
    """A bounded dict of key -> (expiry, bytes) for hot responses; entries live `ttl` seconds."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, tuple[float, bytes]] = {}

    def get(self, key: str) -> bytes | None:
        hit = self._entries.get(key)
        if hit is None:
            return None
        if hit[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        return hit[1]

    def put(self, key: str, value: bytes) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()
        self._entries[key] = (time.monotonic() + self.ttl, value)

    def drop(self, key: str) -> None:
        self._entries.pop(key, None)


class ResponseCache:
    """Two-level cache of serialized responses: in-process first, then Redis, then `load`.

    Concurrent misses for one key in a worker share a single lookup (no thundering herd on
    a cold or just-expired key).
    """

    def __init__(self, redis: aioredis.Redis, local: LocalCache, ttl_seconds: float) -> None:
        self.redis = redis
        self.local = local
        self.ttl_ms = int(ttl_seconds * 1000)
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}

    async def get_or_load(self, key: str, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        value = self.local.get(key)
        if value is not None:
            metrics.CACHE.labels("local", "hit").inc()
            return value
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        pending = asyncio.get_running_loop().create_future()
        self._inflight[key] = pending
        try:
            value = await self._fetch(key, load)
            pending.set_result(value)
            return value
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # marks it retrieved when no other request waited
            raise
        finally:
            del self._inflight[key]

    async def _fetch(self, key: str, load: Callable[[], Awaitable[bytes | None]]) -> bytes | None:
        value = await self.redis.get(key)
        if value is not None:
            metrics.CACHE.labels("redis", "hit").inc()
        else:
            metrics.CACHE.labels("redis", "miss").inc()
            value = await load()
            if value is None:
                return None
            await self.redis.set(key, value, px=self.ttl_ms)
        self.local.put(key, value)
        return value

    async def invalidate(self, *keys: str, redis_only: list[str] | tuple[str, ...] = ()) -> None:
        """Drop `keys` here and in Redis (other workers' local copies expire by their short TTL)."""
        for key in keys:
            self.local.drop(key)
        if keys or redis_only:
            await self.redis.delete(*keys, *redis_only)
