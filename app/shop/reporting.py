"""Reporting reads (admin statistics): on the streaming replica when one is set, on the primary when it cannot answer.

A reporting read may be a little stale (asynchronous replication) and must never fail because the
replica does: a replica that cannot be reached, does not answer in time, or cancels the statement
over a recovery conflict sends the read to the primary, with a log line and
`shop_db_replica_fallbacks_total`; a replica that hangs costs a read `timeout` seconds at most
(its ping, connect and statement together). After such a failure the replica is left alone for
`retry_after` seconds (one log line, not one per request, while it is down).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
import sqlalchemy.exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shop import metrics
from shop.dependencies import unavailable_dependency

log = logging.getLogger("shop.db")
T = TypeVar("T")


def replica_cannot_answer(exc: BaseException) -> bool:
    """`exc` says the replica is unavailable (down, hung, full, cancelling for recovery), not that the read is wrong."""
    if isinstance(exc, TimeoutError) or unavailable_dependency(exc) == "database":
        return True
    # "canceling statement due to conflict with recovery": replay needed the rows the read was using.
    cause = exc
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.orig is not None:
        cause = exc.orig.__cause__ or exc.orig
    return isinstance(cause, asyncpg.exceptions.SerializationError) and "recovery" in str(cause)


class ReportingReads:
    """Runs a read on the replica's engine (when there is one), else or on failure on the primary's."""

    def __init__(
        self, primary: AsyncEngine, replica: AsyncEngine | None, timeout: float = 2.0, retry_after: float = 5.0
    ) -> None:
        self.primary = primary
        self.replica = replica
        self.timeout = timeout
        self.retry_after = retry_after
        self._replica_resting_until = 0.0
        # Abandoned replica reads still closing their connection (kept referenced until they end).
        self._abandoned: set[asyncio.Task[object]] = set()

    async def run(self, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`read(conn)` on the replica, or on the primary if there is none or it cannot answer (reads only: it may run twice)."""
        if self.replica is not None:
            if time.monotonic() >= self._replica_resting_until:
                try:
                    result = await self._on_replica(self.replica, read)
                except Exception as exc:
                    if not replica_cannot_answer(exc):
                        raise
                    self._replica_resting_until = time.monotonic() + self.retry_after
                    log.warning(
                        "replica unavailable: reporting reads go to the primary",
                        extra={"fields": {"dependency": "database-replica", "error": type(exc).__name__,
                                          "detail": str(exc)[:300], "retry_after_s": self.retry_after}},
                    )  # fmt: skip
                else:
                    metrics.REPORTING_READS.labels("replica").inc()
                    return result
            metrics.REPLICA_FALLBACKS.inc()
        async with self.primary.connect() as conn:
            result = await read(conn)
        metrics.REPORTING_READS.labels("primary").inc()
        return result

    async def _on_replica(self, replica: AsyncEngine, read: Callable[[AsyncConnection], Awaitable[T]]) -> T:
        """`read` on the replica within `timeout`; TimeoutError after it.

        A cancelled read on a hung server takes as long again to close its connection (SQLAlchemy
        closes it politely): that clean-up goes on in the background, the caller does not wait for it.
        """

        async def attempt() -> T:
            async with replica.connect() as conn:
                return await read(conn)

        task = asyncio.ensure_future(attempt())
        try:
            done, _ = await asyncio.wait({task}, timeout=self.timeout)
        except asyncio.CancelledError:  # the request itself was cancelled: so is its read
            task.cancel()
            raise
        if task in done:
            return task.result()
        task.cancel()
        self._abandoned.add(task)
        task.add_done_callback(self._forget)
        raise TimeoutError(f"the replica did not answer within {self.timeout:g} s")

    def _forget(self, task: asyncio.Task[object]) -> None:
        self._abandoned.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "exception was never retrieved" warning
