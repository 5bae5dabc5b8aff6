"""The seed command: a deterministic catalog, idempotent by SKU."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from shop.migrate import upgrade
from shop.seed import catalog_rows, seed_catalog
from shop_ops.services.processes import PostgresCluster
from tests.support import new_database


def test_rows_are_deterministic_and_valid():
    first, second = catalog_rows(500), catalog_rows(500)
    assert first == second
    assert catalog_rows(500, seed=7) != first
    assert len({row[0] for row in first}) == 500
    assert all(row[3] >= 0 and row[4] >= 0 for row in first)


def test_seed_command_loads_and_reloads_without_duplicates(postgres: PostgresCluster):
    url = new_database(postgres)
    upgrade(url)
    env = {**os.environ, "SHOP_DATABASE_URL": url, "SHOP_REDIS_URL": "redis://127.0.0.1:1/0"}
    seed = Path(sys.executable).parent / "shop-seed"
    for _ in range(2):
        result = subprocess.run([str(seed), "--products", "10000"], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "seeded 10000 products"
    db = url.rsplit("/", 1)[1]
    assert postgres.psql("SELECT count(*), count(DISTINCT sku) FROM products", db) == "10000|10000"
    asyncio.run(seed_catalog(url, 10))
    assert postgres.psql("SELECT count(*) FROM products", db) == "10000"
