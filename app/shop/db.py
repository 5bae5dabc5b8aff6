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
    # pending | paid | failed | refunded: moved only by the payment provider's events (shop/payments.py).
    Column("payment_status", Text, nullable=False, server_default=text("'pending'")),
    Index("ix_orders_created_at", "created_at"),
)

# The payment provider's events, one row per event id (a replay inserts nothing); `applied` says whether
# the event moved the order's payment status (an out-of-order event is recorded, not applied).
payment_events = Table(
    "payment_events",
    metadata,
    Column("event_id", Text, primary_key=True),
    Column("order_id", BigInteger, ForeignKey("orders.id", ondelete="CASCADE"), nullable=False),
    Column("type", Text, nullable=False),
    Column("amount_cents", BigInteger, nullable=True),
    Column("applied", Boolean, nullable=False),
    Column("payload_sha256", Text, nullable=False),
    Column("received_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_payment_events_order_id", "order_id"),
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
    """The settings' database URL with the user (SHOP_DATABASE_USER, if set) and the password (kept out of the
    URL string) filled in."""
    url = make_url(settings.database_url)
    if settings.database_user:
        url = url.set(username=settings.database_user)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    return url


def statement_cache_args(pooler: str) -> dict[str, Any]:
    """asyncpg's connect arguments (and SQLAlchemy's DBAPI ones) for what sits between the backend and PostgreSQL.

    `pgbouncer`: PgBouncer 1.18 in transaction pooling hands each transaction (each autocommit
    statement) any server connection, and keeps no prepared statements. So no statement caches,
    and every statement unnamed: asyncpg describes it with Parse/Describe/Flush (no Sync) and then
    sends Parse again with Bind/Execute and one Sync, and PgBouncer keeps the server connection
    linked until that Sync's ReadyForQuery, so a statement is parsed on the server connection that
    runs it (tests/ops/test_pgbouncer.py proves it under load). Named statements, even with unique names, would pile up on
    the server connections (the Close comes in a later transaction, on another connection).
    Every execution is planned with its parameters: the custom plans trigram search needs.
    `none` (a direct connection): both caches on (asyncpg's 100 statements, SQLAlchemy's 100),
    with the role's plan_cache_mode = force_custom_plan for the cached ones.
    """
    if pooler == "none":
        return {}
    return {
        "statement_cache_size": 0,
        "prepared_statement_cache_size": 0,
        "prepared_statement_name_func": _unnamed,
    }


def _unnamed() -> str:
    """The unnamed prepared statement (""): replaced by the next Parse on the same server connection."""
    return ""


def create_engine(settings: Settings) -> AsyncEngine:
    """An asyncpg engine, through PgBouncer or direct (`database_pooler`); pool and timeouts from the settings."""
    return create_async_engine(
        database_url(settings),
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=False,
        # A hung server costs a request database_timeout_seconds (to connect, to get a pooled
        # connection, or per statement: database_timeouts), not forever; the request then answers 503
        # (shop/dependencies.py).
        pool_timeout=settings.database_timeout_seconds,
        connect_args={
            # Only parameters PgBouncer passes on: session settings (plan_cache_mode, timeouts) are the
            # role's (ALTER ROLE shop SET ...), so they hold through a pooler too.
            "server_settings": {"application_name": "shop"},
            **statement_cache_args(settings.database_pooler),
            **database_timeouts(settings),
        },
    )


def database_timeouts(settings: Settings) -> dict[str, float]:
    """asyncpg's connect arguments that bound a connection's waits by `database_timeout_seconds`.

    `timeout`: connecting (TCP and the startup handshake). `command_timeout`: each statement, half
    the setting, because when a statement times out asyncpg then spends up to command_timeout more
    sending PostgreSQL a cancel request (and closes the connection if that times out too, as it
    does on a hung server): a statement on a hung server costs the whole setting, not twice it.
    """
    return {"timeout": settings.database_timeout_seconds, "command_timeout": settings.database_timeout_seconds / 2}


REPLICA_APPLICATION_NAME = "shop-reporting"


def create_replica_engine(settings: Settings) -> AsyncEngine | None:
    """An asyncpg engine on the streaming replica (SHOP_DATABASE_REPLICA_URL, the primary's password),
    or None without one. Reporting reads only (shop/reporting.py): a small pool, pinged before use (a
    replica restart must not cost a fallback), connect and statements bounded by the database timeout
    so that a hung replica costs a read that long before it goes to the primary."""
    if settings.database_replica_url is None:
        return None
    url = make_url(settings.database_replica_url)
    if settings.database_user:
        url = url.set(username=settings.database_user)
    if settings.database_password is not None:
        url = url.set(password=settings.database_password.get_secret_value())
    return create_async_engine(
        url,
        pool_size=2,
        max_overflow=settings.database_pool_size,
        pool_pre_ping=True,
        pool_timeout=settings.database_timeout_seconds,
        connect_args={
            "server_settings": {"application_name": REPLICA_APPLICATION_NAME},
            **database_timeouts(settings),
        },
    )


async def fetchrow(engine: AsyncEngine, sql: str, *args: Any) -> Any:
    """One statement (`$1`-style parameters) straight on asyncpg, on a connection of the engine's pool:
    the first row as an asyncpg Record, or None. Autocommit: only for a statement atomic on its own.

    The hot paths' single statements go here: SQLAlchemy's `conn.execute` wraps even one read in
    BEGIN ... ROLLBACK (two more round trips to PostgreSQL) and runs its Core layers in a greenlet;
    asyncpg prepares the statement once per connection when its cache is on (docs/performance.md).
    Through PgBouncer (statement_cache_args) the statement is unnamed and no Sync comes between its
    Parse and its Bind/Execute: one autocommit statement on one server connection.
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
