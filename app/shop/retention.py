"""Retention of synthetic orders: smoke and load-test orders past an age are deleted, in short batches."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

# Orders deleted per transaction: a big purge holds its row locks (and the cascade's on
# order_lines) briefly, batch by batch, instead of for the whole run; and each batch's statement
# stays well inside the backend's statement bound (half of SHOP_DATABASE_TIMEOUT_SECONDS: 1 s by
# default), which 5,000 orders with their lines exceeded on a loaded 2-core machine (CI: a 503), and 1,000
# now that payment events go with them too (CI, under other test runs: a 503).
PURGE_BATCH = 500
# The longest age the API takes (100 years); past it, now() - age leaves PostgreSQL's timestamp range.
MAX_AGE_SECONDS = 100 * 365 * 24 * 3600

_CUTOFF_SQL = text("SELECT now() - make_interval(secs => CAST(:age AS double precision))")
# Oldest first from `after`, the newest creation time the previous batch deleted: each batch starts
# where the last one stopped in ix_orders_created_at, so the old real orders that stay are passed
# over once, not once per batch. Order lines go with their order (ON DELETE CASCADE); nothing else
# refers to orders (idempotency keys are a column of orders, carts live in Redis).
_PURGE_BATCH_SQL = text(
    """
    DELETE FROM orders WHERE id IN (
        SELECT id FROM orders
        WHERE synthetic AND created_at >= :after AND created_at < :cutoff
        ORDER BY created_at
        LIMIT :batch
    )
    RETURNING created_at
    """
)
_BEGINNING = datetime(1, 1, 1, tzinfo=UTC)


class Retention:
    """Deletes what the shop keeps only for a while: synthetic orders with their lines."""

    def __init__(self, engine: AsyncEngine, batch_size: int = PURGE_BATCH) -> None:
        self.engine = engine
        self.batch_size = batch_size

    async def purge_synthetic_orders(self, older_than_seconds: int) -> int:
        """Delete the synthetic orders created more than `older_than_seconds` ago; how many.

        The cutoff is fixed when the purge starts, so orders placed while it runs (a load test
        that did not wait) are left for the next purge and the loop ends. Real orders are never
        touched.
        """
        async with self.engine.connect() as conn:
            cutoff = await conn.scalar(_CUTOFF_SQL, {"age": older_than_seconds})
        deleted, after = 0, _BEGINNING
        while True:
            async with self.engine.begin() as conn:
                result = await conn.execute(
                    _PURGE_BATCH_SQL, {"after": after, "cutoff": cutoff, "batch": self.batch_size}
                )
                created = list(result.scalars())
            deleted += len(created)
            # Each full batch deletes rows, so this ends; a short one means nothing older is left.
            if len(created) < self.batch_size:
                return deleted
            after = max(created)
