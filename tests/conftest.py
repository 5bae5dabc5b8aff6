"""Fixtures that start the real services (PostgreSQL 15, Redis 7) on free ports under temp folders."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_ops.localstack.processes import PostgresCluster, RedisServer, free_port


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    # Not under pytest's 0700 temp folder: as root, PostgreSQL runs as the postgres OS user.
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-pg-"))
    base.chmod(0o755)
    cluster = PostgresCluster(datadir=base / "data", port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(datadir=Path(tmp_path_factory.mktemp("redis")), port=free_port())
    server.start()
    yield server
    server.stop()
