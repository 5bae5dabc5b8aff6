"""The cart store's Redis client: its own URL, or the primary that Sentinel names, through a pool that waits at its limit.

Carts live in a Redis that never evicts (issue 13), apart from the cache (SHOP_REDIS_URL). Where
it is: SHOP_CARTS_SENTINELS (Sentinel names the primary of SHOP_CARTS_SENTINEL_SERVICE, and a
failover moves it), else SHOP_CARTS_REDIS_URL, else the cache's own client (one Redis for both,
as before). The user is the one of the URLs (SHOP_CARTS_REDIS_URL's, else SHOP_REDIS_URL's), with
SHOP_REDIS_PASSWORD, on the cart store and on Sentinel alike.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ConstantBackoff

from shop.cache import create_redis, redis_connection_options
from shop.settings import Settings

T = TypeVar("T")

# How often a command retries a refused or reset connection while a failover is under way.
FAILOVER_RETRY_STEP_SECONDS = 0.2


class BlockingSentinelPool(SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """Sentinel's pool (each new connection goes to the primary Sentinel names now) that waits for a
    free connection at its limit, as BlockingConnectionPool does.

    redis-py's own Sentinel pool raises MaxConnectionsError at its limit, which answered 4% of
    requests with HTTP 500 at 500 req/s (DESIGN.md). The method order takes the connection
    handling (which server) from SentinelConnectionPool and get_connection/release (wait, then
    hand out) from BlockingConnectionPool.
    """


class PrimaryConnection(SentinelManagedConnection):
    """A connection to the primary Sentinel names, also when it reconnects in the middle of a command.

    redis-py 8.1's asyncio `send_packed_command` reconnects a dropped connection through
    `connect_check_health`, to the address the connection had, not through `connect()`, which
    asks Sentinel: a command in flight when the primary died kept dialling the dead primary for the
    whole retry, after the failover had long finished (measured: 10 s, then 503).
    """

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self.is_connected:
            await self.connect()  # Sentinel's primary now
        await super().send_packed_command(command, check_health)


class FailoverRetry(Retry):
    """Retry a command whose connection was refused or reset, every `step` seconds, for up to `wait`
    seconds from its first try: a failover (the primary died, Sentinel promotes the replica) then
    costs the requests in flight a wait, not an error. Timeouts are not retried: a hung server costs
    one `redis_timeout_seconds`, as everywhere else. A retry nested in another (a reconnect inside a
    retried command) shares nothing but the clock, so the whole never waits much past `wait`.
    """

    def __init__(self, wait: float, step: float = FAILOVER_RETRY_STEP_SECONDS) -> None:
        super().__init__(ConstantBackoff(step), retries=max(1, int(wait / step)),
                         supported_errors=(redis.exceptions.ConnectionError,))  # fmt: skip
        self.wait = wait
        self.step = step

    def __deepcopy__(self, memo: dict[int, Any]) -> FailoverRetry:
        return FailoverRetry(self.wait, self.step)

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        deadline = time.monotonic() + self.wait
        failures = 0
        while True:
            try:
                return await do()
            except redis.exceptions.ConnectionError as error:
                if is_retryable and not is_retryable(error):
                    raise
                failures += 1
                await (fail(error, failures) if with_failure_count else fail(error))
                if time.monotonic() + self.step > deadline:
                    raise
                await asyncio.sleep(self.step)


def _user_and_db(url: str) -> tuple[str | None, int]:
    parts = urlsplit(url)
    path = parts.path.strip("/")
    return (unquote(parts.username) if parts.username else None), (int(path) if path.isdigit() else 0)


def create_carts_redis(settings: Settings, cache: aioredis.Redis) -> aioredis.Redis:
    """The client of the cart store (`cache` itself when carts have no Redis of their own)."""
    password = settings.redis_password.get_secret_value() if settings.redis_password else None
    options = redis_connection_options(settings)
    sentinels = settings.sentinel_addresses()
    if sentinels:
        username, _ = _user_and_db(settings.carts_redis_url or settings.redis_url)
        auth = {"username": username, "password": password}
        sentinel = Sentinel(
            sentinels,
            sentinel_kwargs={**auth, **options},
            **auth,
            socket_timeout=options["socket_timeout"],
            socket_connect_timeout=options["socket_connect_timeout"],
        )
        return sentinel.master_for(
            settings.carts_sentinel_service,
            connection_pool_class=BlockingSentinelPool,
            connection_class=PrimaryConnection,
            max_connections=settings.redis_max_connections,
            timeout=settings.redis_timeout_seconds,
            retry=FailoverRetry(settings.redis_failover_wait_seconds),
        )
    if settings.carts_redis_url:
        # A primary endpoint that a managed failover moves (ElastiCache's DNS name): ride it like Sentinel's.
        return create_redis(settings, settings.carts_redis_url, FailoverRetry(settings.redis_failover_wait_seconds))
    return cache
