"""Business figures over a time window: orders and revenue, synthetic (smoke and load-test) orders kept apart."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from shop.reporting import ReportingReads

# One scan of ix_orders_created_at's range; synthetic orders are counted, never added to the figures.
_ORDERS_SQL = text(
    """
    SELECT count(*) FILTER (WHERE NOT synthetic) AS orders,
           coalesce(sum(total_cents) FILTER (WHERE NOT synthetic), 0) AS revenue_cents,
           count(*) FILTER (WHERE synthetic) AS synthetic_orders
    FROM orders
    WHERE created_at >= :since AND created_at < :until
    """
)


@dataclass(frozen=True)
class OrderFigures:
    """Orders created in [since, until): real orders and their revenue; synthetic ones only counted."""

    orders: int
    revenue_cents: int
    synthetic_orders: int


class Statistics:
    """Read-only business figures for reports (cost per order, for one), read on the replica when there is one."""

    def __init__(self, reads: ReportingReads) -> None:
        self.reads = reads

    async def orders(self, since: datetime, until: datetime) -> OrderFigures:
        """The orders created from `since` (included) to `until` (excluded); seconds stale at most on a replica."""

        async def read(conn: AsyncConnection) -> Any:
            return (await conn.execute(_ORDERS_SQL, {"since": since, "until": until})).one()

        row = await self.reads.run(read)
        return OrderFigures(
            orders=int(row.orders), revenue_cents=int(row.revenue_cents), synthetic_orders=int(row.synthetic_orders)
        )
