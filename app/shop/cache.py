"""Caching: a short in-process TTL cache in front of Redis, and the Redis client factory."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shop import metrics
from shop.dependencies import REDIS_UNAVAILABLE
from shop.settings import Settings

log = logging.getLogger("shop.cache")
T = TypeVar("T")


def redis_connection_options(settings: Settings) -> dict[str, Any]:
    """The bounds of every Redis connection the shop opens (cache, cart store, through Sentinel or not).

    A hung server (it accepts connections and never answers) costs a command `redis_timeout_seconds`,
    not forever. A command that finds its pooled connection dead (Redis restarted, a failover) is
    retried once at once on a new connection; a timeout is not retried (that would double the wait).
    Pass them to a connection pool or `Sentinel(...)` / `master_for(...)`; a `BlockingConnectionPool`
    also takes `timeout=settings.redis_timeout_seconds`, the wait for a free connection.
    """
    return {
        "socket_timeout": settings.redis_timeout_seconds,
        "socket_connect_timeout": settings.redis_timeout_seconds,
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.exceptions.ConnectionError,)),
    }


def create_redis(settings: Settings, url: str | None = None, retry: Retry | None = None) -> aioredis.Redis:
    """A client of the Redis at `url` (default: the cache's) whose pool waits (a bounded time) for a free
    connection instead of failing at its limit; `retry` replaces the one immediate retry of a dead connection."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options = redis_connection_options(settings)
    if retry is not None:
        options["retry"] = retry
    pool = aioredis.BlockingConnectionPool.from_url(
        url or settings.redis_url,
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_timeout_seconds,
        password=password,
        **options,
    )
    return aioredis.Redis(connection_pool=pool)


class CacheUnavailable(Exception):
    """Redis failed (down, hung, no primary), or the breaker skips it for now: serve without it."""


class RedisBreaker:
    """After a Redis failure, cache lookups skip Redis for `cooldown` seconds instead of each paying a
    timeout; then one lookup probes Redis (the others keep skipping it) and its outcome closes the
    breaker or opens it again."""

    def __init__(self, cooldown: float = 1.0) -> None:
        self.cooldown = cooldown
        self._open_until = 0.0  # monotonic; 0: closed
        self._probing = False

    def allows(self) -> bool:
        """May this caller use Redis now? (True for the one probe after the cooldown.)"""
        if not self._open_until:
            return True
        if self._probing or time.monotonic() < self._open_until:
            return False
        self._probing = True
        return True

    def succeeded(self) -> None:
        if self._open_until:
            log.info("redis answers again: the cache uses it", extra={"fields": {"use": "cache"}})
        self._open_until = 0.0
        self._probing = False

    def abandon(self) -> None:
        """The caller went away without an answer from Redis: another lookup may probe."""
        self._probing = False

    def failed(self, exc: BaseException) -> None:
        if not self._open_until or self._probing:
            log.warning(
                "redis unavailable: the cache skips it",
                extra={"fields": {"use": "cache", "error": type(exc).__name__, "retry_in_s": self.cooldown}},
            )
        self._open_until = time.monotonic() + self.cooldown
        self._probing = False


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

    def __init__(
        self, redis: aioredis.Redis, local: LocalCache, ttl_seconds: float, breaker: RedisBreaker | None = None
    ) -> None:
        self.redis = redis
        self.local = local
        self.ttl_ms = int(ttl_seconds * 1000)
        self.breaker = breaker or RedisBreaker()
        self._inflight: dict[str, asyncio.Future[bytes | None]] = {}

    async def shared(self, command: Callable[[], Awaitable[T]]) -> T:
        """Run a Redis command of the cache; CacheUnavailable when Redis fails or the breaker skips it."""
        if not self.breaker.allows():
            raise CacheUnavailable
        try:
            result = await command()
        except REDIS_UNAVAILABLE as exc:
            metrics.REDIS_ERRORS.labels("cache").inc()
            self.breaker.failed(exc)
            raise CacheUnavailable from exc
        except redis.exceptions.RedisError:
            self.breaker.succeeded()  # Redis answered, with an error of the command
            raise
        except BaseException:
            self.breaker.abandon()  # cancelled: no verdict on Redis
            raise
        self.breaker.succeeded()
        return result

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
        """Redis, then `load` (PostgreSQL). Without Redis (down, hung, skipped by the breaker) the
        answer comes from `load`: the cache is a cache."""
        try:
            value = await self.shared(lambda: self.redis.get(key))
        except CacheUnavailable:
            metrics.CACHE.labels("redis", "bypass").inc()
            value = await load()
            if value is not None:
                self.local.put(key, value)
            return value
        if value is not None:
            metrics.CACHE.labels("redis", "hit").inc()
        else:
            metrics.CACHE.labels("redis", "miss").inc()
            value = await load()
            if value is None:
                return None
            with contextlib.suppress(CacheUnavailable):
                await self.shared(lambda: self.redis.set(key, value, px=self.ttl_ms))
        self.local.put(key, value)
        return value

    async def invalidate(self, *keys: str) -> None:
        """Drop `keys` here and in Redis (other workers' local copies expire by their short TTL)."""
        for key in keys:
            self.local.drop(key)
        if keys:
            await self.redis.delete(*keys)
