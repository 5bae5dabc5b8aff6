"""Alembic environment: runs migrations over asyncpg against the configured database."""

from __future__ import annotations

import asyncio
import warnings

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shop.db import metadata

config = context.config


def _url():
    url = config.attributes.get("url")
    if url is not None:
        return url
    from shop.db import database_url
    from shop.settings import load_settings

    return database_url(load_settings())


# Expression indexes with operator classes cannot be compared by autogenerate; migrations own them.
EXPRESSION_INDEXES = {"ix_products_search_trgm"}
warnings.filterwarnings("ignore", message=".*ix_products_search_trgm.*operator clause")


def _include_object(obj, name, type_, reflected, compare_to) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection, target_metadata=metadata, compare_type=True, include_object=_include_object
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    # A direct session (never through PgBouncer): the shop role's statement timeouts are for serving,
    # not for building an index over a large table.
    no_timeouts = {"statement_timeout": "0", "idle_in_transaction_session_timeout": "0"}
    engine = create_async_engine(_url(), connect_args={"timeout": 10, "server_settings": no_timeouts})
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run)
            await connection.commit()
    finally:
        await engine.dispose()


if context.is_offline_mode():
    context.configure(url=str(_url()), target_metadata=metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_async())
