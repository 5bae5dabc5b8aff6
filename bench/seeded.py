"""The benchmarks' own shop database: PostgreSQL 15 (database `shop`, migrated, catalog seeded) and Redis, on free ports.

with seeded_shop(prefix="shop-bench-", products=10_000) as shop:
    shop.url, shop.redis.url(0), shop.base (a world-readable temp folder, removed afterwards)
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port, wait_for_http


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


def serve(shop: SeededShop, workers: int, **extra_env: str) -> tuple[subprocess.Popen[bytes], str]:
    """`shop-serve` with `workers` against the seeded database and Redis db 0 on a free port, logging to
    `shop.base/shop.log`; returns the process (the caller terminates it) and its URL once /readyz answers."""
    port = free_port()
    env = {
        **os.environ, "SHOP_DATABASE_URL": shop.url, "SHOP_REDIS_URL": shop.redis.url(0), "SHOP_PORT": str(port),
        "SHOP_WORKERS": str(workers), **extra_env,
    }  # fmt: skip
    log = shop.base / "shop.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([str(Path(sys.executable).parent / "shop-serve")], env=env, stdout=out, stderr=out)
    url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{url}/readyz", 30, server, log)
    return server, url
