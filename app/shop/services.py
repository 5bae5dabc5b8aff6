"""The services the routes use (database, Redis, catalog, carts, checkout, payments, ...), one set per worker."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine

from shop import metrics
from shop.cache import LocalCache, ResponseCache, create_redis
from shop.carts import Carts
from shop.cartstore import create_carts_redis
from shop.catalog import Catalog
from shop.checkout import Checkout
from shop.db import create_engine, create_replica_engine
from shop.health import ReadinessChecks
from shop.migrate import contract_revisions, known_revisions
from shop.payments import Payments
from shop.reporting import ReportingReads
from shop.retention import Retention
from shop.settings import Settings
from shop.statistics import Statistics


@dataclass
class Services:
    """What the routes use, built once per worker process."""

    settings: Settings
    engine: AsyncEngine
    catalog: Catalog
    carts: Carts
    checkout: Checkout
    payments: Payments
    retention: Retention
    statistics: Statistics
    known_revisions: list[str]
    contract_revisions: frozenset[str]
    readiness: ReadinessChecks


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Connect the database pool and Redis, build the services on them, and close both on exit."""
    engine = create_engine(settings)
    # Reporting reads (statistics) on the streaming replica when one is set, else on the primary.
    replica_engine = create_replica_engine(settings)
    redis = create_redis(settings)
    cache = ResponseCache(redis, LocalCache(settings.local_cache_ttl_seconds), settings.cache_ttl_seconds)
    catalog = Catalog(engine, cache)
    # The cart store: its own Redis (never evicts), through Sentinel when set; else the cache's client.
    carts_redis = create_carts_redis(settings, redis)
    carts = Carts(carts_redis, catalog, settings.cart_ttl_seconds)
    metrics.DB_POOL_SIZE.set(settings.database_pool_size)
    try:
        yield Services(
            settings=settings,
            engine=engine,
            catalog=catalog,
            carts=carts,
            checkout=Checkout(engine, carts, catalog),
            payments=Payments(engine),
            retention=Retention(engine),
            statistics=Statistics(ReportingReads(engine, replica_engine, settings.database_timeout_seconds)),
            known_revisions=known_revisions(),
            contract_revisions=contract_revisions(),
            readiness=ReadinessChecks(engine, carts),
        )
    finally:
        if carts_redis is not redis:
            await carts_redis.aclose()
        await redis.aclose()
        await engine.dispose()
        if replica_engine is not None:
            await replica_engine.dispose()
