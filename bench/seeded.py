"""The benchmarks' own shop database: PostgreSQL 15 (database `shop`, migrated, catalog seeded) and Redis, on free ports.

with seeded_shop(prefix="shop-bench-", products=10_000) as shop:
    shop.url, shop.redis.url(0), shop.base (a world-readable temp folder, removed afterwards)
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port


@dataclass(frozen=True)
class SeededShop:
    base: Path
    postgres: PostgresCluster
    redis: RedisServer
    url: str  # postgresql+asyncpg://shop@127.0.0.1:PORT/shop (trust on loopback)


@contextmanager
def seeded_shop(prefix: str, products: int) -> Iterator[SeededShop]:
    """Start both servers under a new temp folder, migrate and seed `products`; stop and remove them after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)  # the postgres user and nginx's workers reach files here
    pg = PostgresCluster(base / "pg", free_port())
    rs = RedisServer(base / "redis", free_port())
    try:
        pg.init()
        pg.start()
        rs.start()
        pg.create_database("shop", owner="shop")
        url = pg.dsn("shop", user="shop", driver="postgresql+asyncpg")
        upgrade(url)
        asyncio.run(seed_catalog(url, products))
        yield SeededShop(base, pg, rs, url)
    finally:
        rs.stop()
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)
