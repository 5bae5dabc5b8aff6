"""Alembic environment: runs migrations over asyncpg against the configured database."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from shop.db import metadata

config = context.config


def _url():  # noqa: ANN202 - URL object or string
    url = config.attributes.get("url")
    if url is not None:
        return url
    from shop.db import database_url
    from shop.settings import load_settings

    return database_url(load_settings())


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata, compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = create_async_engine(_url(), connect_args={"timeout": 10})
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
