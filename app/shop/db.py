"""Database schema (SQLAlchemy Core tables), the async engine factory, and one statement straight on asyncpg."""

from __future__ import annotations

from typing import Any

import asyncpg
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shop.settings import Settings

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("sku", Text, nullable=False, unique=True),
    Column("name", Text, nullable=False),
    Column("description", Text, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("stock", Integer, nullable=False),
    Column("category", Text, nullable=False),
    Column("brand", Text, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    CheckConstraint("price_cents >= 0", name="ck_products_price_nonnegative"),
    CheckConstraint("stock >= 0", name="ck_products_stock_nonnegative"),
    Index("ix_products_category_id", "category", "id"),
    Index("ix_products_brand", "brand"),
    Index(
        "ix_products_search_trgm",
        text("(name || ' ' || description) gin_trgm_ops"),
        postgresql_using="gin",
    ),
)

orders = Table(
    "orders",
    metadata,
    Column("id", BigInteger, primary_key=True),
    Column("email", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("total_cents", BigInteger, nullable=False),
    Column("synthetic", Boolean, nullable=False, server_default=text("false")),
    Column("idempotency_key", Text, nullable=False, unique=True),
    Column("cart_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_orders_created_at", "created_at"),
)

order_lines = Table(
    "order_lines",
    metadata,
    Column("order_id", BigInteger, ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
    Column("product_id", BigInteger, ForeignKey("products.id"), primary_key=True),
    Column("name", Text, nullable=False),
    Column("price_cents", Integer, nullable=False),
    Column("quantity", Integer, nullable=False),
    CheckConstraint("quantity > 0", name="ck_order_lines_quantity_positive"),
)

SEARCH_EXPRESSION = "(name || ' ' || description)"


def database_url(settings: Settings) -> URL:
    """The settings' database URL with the password (kept out of the URL string) filled in."""
    url = make_url(settings.database_url)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    return url


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine; custom plans so trigram search uses its index with prepared statements."""
    return create_async_engine(
        database_url(settings),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=False,
        connect_args={
            "server_settings": {"plan_cache_mode": "force_custom_plan", "application_name": "shop"},
            "timeout": 5,
        },
    )


async def fetchrow(engine: AsyncEngine, sql: str, *args: Any) -> Any:
    """One statement (`$1`-style parameters) straight on asyncpg, on a connection of the engine's pool:
    the first row as an asyncpg Record, or None. Autocommit: only for a statement atomic on its own.

    The hot paths' single statements go here: SQLAlchemy's `conn.execute` wraps even one read in
    BEGIN ... ROLLBACK (two more round trips to PostgreSQL) and runs its Core layers in a greenlet;
    asyncpg prepares the statement once per connection (docs/performance.md).
    """
    async with engine.connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        assert driver is not None
        try:
            return await driver.fetchrow(sql, *args)
        except _CONNECTION_LOST:
            # SQLAlchemy's own execute would notice the lost connection; here the pool is told, or it
            # would hand the dead connection out again (after a PostgreSQL restart, say).
            await conn.invalidate()
            raise


_CONNECTION_LOST = (
    OSError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,  # admin shutdown, terminated backend, cancelled query
    # a termination that arrives while the statement is being sent leaves the protocol mid-operation:
    # "cannot switch to state 12; another operation (2) is in progress", and the connection closed
    asyncpg.exceptions.InternalClientError,
)
