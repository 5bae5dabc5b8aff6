"""Helpers for tests that need the shop backend: databases, its environment, a real server process."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from shop_ops.release.flow import Log, Strategy
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.ledger import PG_ENV
from shop_ops.services.processes import PostgresCluster, free_port, wait_for_http

_db_names = itertools.count(1)
SEED_PRODUCTS = 300


@contextmanager
def running_cluster(prefix: str) -> Iterator[PostgresCluster]:
    """A PostgreSQL cluster on a free port, in a temp folder the postgres OS user may enter; removed after."""
    # Not under pytest's 0700 temp folder: as root, PostgreSQL runs as the postgres OS user.
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    cluster = PostgresCluster(datadir=base / "data", port=free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def new_database(postgres: PostgresCluster, prefix: str = "shop") -> str:
    """A new empty database owned by the role `shop`; returns its asyncpg URL."""
    name = f"{prefix}_{next(_db_names)}_{os.getpid()}"
    postgres.create_database(name, owner="shop")
    return postgres.dsn(name, user="shop", driver="postgresql+asyncpg")


def dagster_pg_env(postgres: PostgresCluster, prefix: str = "ledger") -> dict[str, str]:
    """The DAGSTER_PG_* variables a run worker would have, for a new database of the test cluster (trust auth)."""
    name = f"{prefix}_{next(_db_names)}_{os.getpid()}"
    postgres.create_database(name, owner="shop")
    values = ("127.0.0.1", str(postgres.port), "shop", "not-checked-trust-auth", name)
    return dict(zip(PG_ENV, values, strict=True))


def shop_env(db_url: str, redis_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update({"SHOP_DATABASE_URL": db_url, "SHOP_REDIS_URL": redis_url, "SHOP_WORKERS": "1"})
    env.update(extra)
    return env


class ShopServer:
    """A running `shop-serve` (granian) process and where it answers."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.env = {**env, "SHOP_PORT": str(self.port), "SHOP_HOST": "127.0.0.1"}
        self.log_path = log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30) -> None:
        serve = str(Path(sys.executable).parent / "shop-serve")
        self.log = open(self.log_path, "wb")
        self.process = subprocess.Popen([serve], env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        wait_for_http(f"{self.url}/healthz", timeout, self.process, self.log_path)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


class FixedTarget(ReleaseTarget):
    """What serves every environment in a test: one URL and the containers to sample; it deploys nothing."""

    target_url: str
    containers: list[str] = []  # noqa: RUF012 (a pydantic field: copied per instance)

    def url(self, environment: str) -> str:
        return self.target_url

    def serving_containers(self, environment: str) -> list[str]:
        return list(self.containers)

    def strategy(self, environment: str, log: Log) -> Strategy:
        raise NotImplementedError("this test deploys nothing")


def cost_explorer_page(
    rows: list[tuple[str, str, str, float]], next_token: str | None = None, estimated: bool = False
) -> dict:
    """One get_cost_and_usage answer grouped by the Environment and Component tags, from (day, env, component, USD)."""
    by_day: dict[str, list] = {}
    for day, env, component, usd in rows:
        by_day.setdefault(day, []).append(
            {
                "Keys": [f"Environment${env}", f"Component${component}"],
                "Metrics": {"UnblendedCost": {"Amount": str(usd), "Unit": "USD"}},
            }
        )
    page = {
        "ResultsByTime": [
            {"TimePeriod": {"Start": d, "End": d}, "Total": {}, "Groups": g, "Estimated": estimated}
            for d, g in by_day.items()
        ],
        "DimensionValueAttributes": [],
    }
    return {**page, "NextPageToken": next_token} if next_token else page


T = TypeVar("T")


def wait_until(what: str, probe: Callable[[], T | None], timeout: float = 30, step: float = 0.5) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` (and the last value seen) after `timeout`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(step)
    pytest.fail(f"{what} not seen within {timeout:.0f} s (last: {last!r})")
