"""Readiness: PostgreSQL and Redis checked concurrently, each bounded; a check that hangs is reported, not waited on."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shop.carts import Carts

T = TypeVar("T")

# /readyz answers within a second whatever hangs: each check gets this long, all run at once.
CHECK_TIMEOUT_SECONDS = 0.8

_HAS_VERSION_TABLE_SQL = text("SELECT to_regclass('alembic_version') IS NOT NULL")
_REVISION_SQL = text("SELECT version_num FROM alembic_version")


class BoundedCheck(Generic[T]):
    """A dependency check that answers within `timeout`, with at most one run in flight.

    A run that has not finished in time keeps going in the background (the drivers' own timeouts end
    it) and the caller hears TimeoutError; asked again meanwhile, the check waits on that same run
    instead of starting another, so a hung server never collects a pile of checks (nor of pooled
    connections) from a load balancer probing every second.
    """

    def __init__(self, check: Callable[[], Awaitable[T]], timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.check = check
        self.timeout = timeout
        self._running: asyncio.Task[T] | None = None

    async def run(self) -> T:
        """The check's result; its exception, or TimeoutError when it has not answered within `timeout`."""
        task = self._running
        if task is None or task.done():
            task = self._running = asyncio.ensure_future(self.check())
            task.add_done_callback(_retrieve)
        done, _ = await asyncio.wait({task}, timeout=self.timeout)
        if not done:
            raise TimeoutError(f"no answer within {self.timeout} s")
        return task.result()


def _retrieve(task: asyncio.Task[Any]) -> None:
    """Mark a finished check's exception as seen (nobody may be waiting for it any more)."""
    if not task.cancelled():
        task.exception()


class ReadinessChecks:
    """The checks behind /readyz: the schema revision from PostgreSQL, a PING to the carts' Redis."""

    def __init__(self, engine: AsyncEngine, carts: Carts, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.carts = carts
        self.database = BoundedCheck(self._revision, timeout)
        self.redis = BoundedCheck(self._ping, timeout)

    async def _revision(self) -> str | None:
        async with self.engine.connect() as conn:
            return await conn.scalar(_REVISION_SQL) if await conn.scalar(_HAS_VERSION_TABLE_SQL) else None

    async def _ping(self) -> bool:
        return await self.carts.redis.ping()

    async def check(self) -> tuple[str | None, str, str]:
        """(schema revision or None, database status, redis status); a status is "ok" or "error: <what>"."""
        revision, redis = await asyncio.gather(self.database.run(), self.redis.run(), return_exceptions=True)
        database = "ok"
        if isinstance(revision, BaseException):
            database, revision = _error(revision), None
        return revision, database, _error(redis) if isinstance(redis, BaseException) else "ok"


def _error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}"
