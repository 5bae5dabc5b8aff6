"""Checkout: a cart becomes an order in one statement, idempotent per key, never overselling."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from shop import metrics
from shop.carts import Carts
from shop.catalog import Catalog
from shop.db import fetchrow
from shop.errors import ApiError, not_found

MAX_KEY_LENGTH = 200

# Stock decrement, order and lines in ONE statement, run on its own (autocommit): it either
# applies whole or fails whole, and the constraints say why it failed:
#   - stock would go below zero       -> check ck_products_stock_nonnegative (never oversold)
#   - the key already placed an order -> unique orders_idempotency_key_key (a concurrent retry
#                                        waits on the index, then fails here)
#   - a product of the cart is gone   -> total_cents NULL (fewer lines than asked for)
# Parameters: $1 product ids, $2 quantities, $3 line count, $4 email, $5 synthetic, $6 key, $7 cart id.
_PLACE_ORDER_SQL = """
    WITH wanted AS (
        SELECT * FROM unnest($1::bigint[], $2::int[]) AS w(product_id, quantity)
    ), taken AS (
        UPDATE products p SET stock = p.stock - w.quantity, updated_at = now()
        FROM wanted w
        WHERE p.id = w.product_id
        RETURNING p.id AS product_id, p.name, p.price_cents, w.quantity
    ), placed AS (
        INSERT INTO orders (email, status, total_cents, synthetic, idempotency_key, cart_id)
        SELECT $4, 'placed', CASE WHEN count(*) = $3 THEN sum(price_cents::bigint * quantity) END, $5, $6, $7
        FROM taken
        RETURNING id, email, status, total_cents, synthetic, created_at, payment_status
    ), lines AS (
        INSERT INTO order_lines (order_id, product_id, name, price_cents, quantity)
        SELECT placed.id, taken.product_id, taken.name, taken.price_cents, taken.quantity FROM placed, taken
    )
    SELECT placed.*, (SELECT json_agg(json_build_object('product_id', product_id, 'name', name,
        'price_cents', price_cents, 'quantity', quantity) ORDER BY product_id) FROM taken) AS items
    FROM placed
"""
_ORDER_BY_KEY_SQL = text("SELECT id, cart_id FROM orders WHERE idempotency_key = :key")
_ORDER_SQL = """
    SELECT o.id, o.email, o.status, o.total_cents, o.synthetic, o.created_at, o.payment_status,
           (SELECT json_agg(json_build_object('product_id', product_id, 'name', name,
                'price_cents', price_cents, 'quantity', quantity) ORDER BY product_id)
            FROM order_lines WHERE order_id = o.id) AS items
    FROM orders o WHERE o.id = $1
"""


def order_number(order_id: int) -> str:
    return f"SO-{order_id:08d}"


def order_doc(row: Any) -> dict[str, Any]:
    items = row["items"]
    if isinstance(items, str):
        items = orjson.loads(items)
    return {
        "id": row["id"],
        "number": order_number(row["id"]),
        "email": row["email"],
        "status": row["status"],
        "total_cents": row["total_cents"],
        "items": items or [],
        "synthetic": row["synthetic"],
        "created_at": row["created_at"].isoformat(),
        "payment_status": row["payment_status"],
    }


def check_key(key: str | None) -> str:
    if not key:
        raise ApiError(400, "missing_idempotency_key", "checkout requires an Idempotency-Key header (e.g. a UUID)")
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise ApiError(
            400, "invalid_idempotency_key", f"Idempotency-Key must be printable, at most {MAX_KEY_LENGTH} chars"
        )
    return key


class Checkout:
    """Places orders and reads them back."""

    def __init__(self, engine: AsyncEngine, carts: Carts, catalog: Catalog) -> None:
        self.engine = engine
        self.carts = carts
        self.catalog = catalog

    async def place(self, cart_id: str, email: str, key: str, synthetic: bool) -> tuple[dict[str, Any], bool]:
        """(order, created): created is False when `key` already placed this order (a retry)."""
        try:
            lines = await self.carts.lines(cart_id)
        except ApiError:
            replay = await self._replay(key, cart_id)
            if replay is not None:
                return replay, False
            raise
        if not lines:
            replay = await self._replay(key, cart_id)
            if replay is not None:
                return replay, False
            raise ApiError(422, "empty_cart", f"cart {cart_id} is empty; add items before checkout")
        ids = sorted(lines)
        try:
            row = await self._place([ids, [lines[i] for i in ids], len(ids), email, synthetic, key, cart_id])
        except asyncpg.exceptions.UniqueViolationError:
            replay = await self._replay(key, cart_id)
            if replay is None:  # cannot happen: the key's order exists once its insert conflicted
                raise
            return replay, False
        except asyncpg.exceptions.CheckViolationError as exc:
            if exc.constraint_name != "ck_products_stock_nonnegative":
                raise
            raise ApiError(409, "insufficient_stock", "not enough stock left for every item in the cart") from None
        except asyncpg.exceptions.NotNullViolationError as exc:
            if exc.column_name != "total_cents":
                raise
            raise ApiError(409, "product_unavailable", "a product in the cart is no longer sold") from None
        await self.catalog.stock_changed(ids)
        await self.carts.drop(cart_id)
        metrics.ORDERS.labels(str(synthetic).lower()).inc()
        return order_doc(row), True

    async def _place(self, args: list[Any]) -> Any:
        """Run the order statement (one round trip, atomic on its own); retried on deadlock.

        The hot path goes to asyncpg directly on a connection from the SQLAlchemy pool (db.fetchrow):
        the statement is prepared once per connection and the greenlet layers stay out of it.
        """
        for attempt in range(3):
            try:
                return await fetchrow(self.engine, _PLACE_ORDER_SQL, *args)
            except asyncpg.exceptions.DeadlockDetectedError:
                if attempt == 2:
                    raise
        raise AssertionError("not reached")

    async def _replay(self, key: str, cart_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_ORDER_BY_KEY_SQL, {"key": key})).first()
        if row is None:
            return None
        if row.cart_id != cart_id:
            raise ApiError(
                409, "idempotency_key_reused", "this Idempotency-Key was used for another cart; use a new key"
            )
        return await self.get(row.id)

    async def get(self, order_id: int) -> dict[str, Any]:
        if order_id < 1 or order_id > 2**62:
            raise not_found("Order", order_id)
        row = await fetchrow(self.engine, _ORDER_SQL, order_id)  # one round trip, no BEGIN/ROLLBACK
        if row is None:
            raise not_found("Order", order_id)
        return order_doc(row)
