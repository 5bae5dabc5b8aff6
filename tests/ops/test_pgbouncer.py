"""PgBouncer in transaction pooling in front of a small PostgreSQL: far more clients than max_connections, the shop through it, SCRAM logins, the role's settings, the exporter."""

from __future__ import annotations

import asyncio
import collections
import secrets
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import text

from shop.db import create_engine, fetchrow, statement_cache_args
from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop.settings import Settings as ShopSettings
from shop_ops.perf.profiles import MIX_SCRIPT, LoadProfile
from shop_ops.resources.k6 import run_k6
from shop_ops.services.exporters import PgBouncerExporter
from shop_ops.services.pgbouncer import PgBouncer
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from shop_ops.settings import DataSettings
from tests.support import SEED_PRODUCTS, ShopServer, shop_env

pytestmark = pytest.mark.services

MAX_CONNECTIONS = 20
POOL_SIZE = 8
CLIENTS = 150  # far more than MAX_CONNECTIONS


@dataclass
class Pooled:
    cluster: PostgresCluster
    bouncer: PgBouncer
    password: str

    def connect(self, password: str | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("statement_cache_size", 0)
        return asyncpg.connect(
            host="127.0.0.1", port=self.bouncer.port, user="shop", database="shop",
            password=password or self.password, **kwargs,
        )  # fmt: skip

    def shop_settings(self, **extra: Any) -> ShopSettings:
        return ShopSettings(
            database_url=self.bouncer.dsn("shop", driver="postgresql+asyncpg"),
            database_password=self.password,
            redis_url="redis://127.0.0.1:1/0",
            **extra,
        )


@pytest.fixture(scope="module")
def pooled() -> Iterator[Pooled]:
    """A cluster of max_connections 20 (SCRAM on TCP) with the shop's schema and catalog; PgBouncer in front."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-pgbouncer-"))
    base.chmod(0o755)  # PostgreSQL and PgBouncer run as the postgres OS user under root
    cluster = PostgresCluster(
        datadir=base / "data", port=free_port(), tcp_auth="scram-sha-256",
        extra_conf={"max_connections": str(MAX_CONNECTIONS)},
    )  # fmt: skip
    bouncer = PgBouncer(base / "pgbouncer", free_port(), cluster.port, "shop", pool_size=POOL_SIZE, max_client_conn=400)
    password = secrets.token_urlsafe(16)
    try:
        cluster.init()
        cluster.start()
        cluster.psql(f"CREATE ROLE shop LOGIN PASSWORD '{password}'")
        cluster.create_database("shop", owner="shop")
        cluster.set_role_defaults("shop", DataSettings().shop_role_defaults())
        # Migrations and seeding keep a direct session (as a release's migration job does).
        direct = f"postgresql+asyncpg://shop:{password}@127.0.0.1:{cluster.port}/shop"
        upgrade(direct)
        asyncio.run(seed_catalog(direct, SEED_PRODUCTS))
        bouncer.sync_auth(cluster, ["shop"])
        bouncer.start()
        yield Pooled(cluster, bouncer, password)
    finally:
        bouncer.stop()
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


STATEMENTS = (
    # (SQL, arguments of iteration i, expected first column): different parameter types and counts,
    # so a statement bound on another client's parse would fail or answer wrongly.
    ("SELECT $1::int * 2, pg_backend_pid()", lambda i: (i,), lambda i: i * 2),
    ("SELECT $1::text || '-x', pg_backend_pid()", lambda i: (str(i),), lambda i: f"{i}-x"),
    ("SELECT $1::bigint + $2::bigint, pg_backend_pid()", lambda i: (i, 7), lambda i: i + 7),
)


async def _client(pooled: Pooled, n: int, seconds: float, errors: list[str], pids: set[int], cache: int) -> int:
    con = await pooled.connect(statement_cache_size=cache)
    done, i, deadline = 0, n * 1_000_000, time.monotonic() + seconds
    try:
        while time.monotonic() < deadline:
            i += 1
            sql, args, expected = STATEMENTS[i % len(STATEMENTS)]
            try:
                row = await con.fetchrow(sql, *args(i))
            except asyncpg.PostgresError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            pids.add(row[1])
            if row[0] != expected(i):
                errors.append(f"wrong answer {row[0]!r} for {sql} with {args(i)}")
            done += 1
    finally:
        await con.close()
    return done


async def _engine_client(engine: Any, n: int, seconds: float, errors: list[str]) -> int:
    """The backend's own two paths: `fetchrow` (asyncpg, autocommit) and a SQLAlchemy statement."""
    done, i, deadline = 0, n * 1_000_000, time.monotonic() + seconds
    while time.monotonic() < deadline:
        i += 1
        try:
            row = await fetchrow(engine, "SELECT id, $1::text AS tag FROM products WHERE id = $2", f"t{i}", 1 + i % 50)
            async with engine.connect() as conn:
                count = (
                    await conn.execute(text("SELECT count(*) FROM products WHERE id <= :n"), {"n": i % 50})
                ).scalar()
        except Exception as exc:  # noqa: BLE001 (every failure is a finding here)
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        if row["tag"] != f"t{i}" or row["id"] != 1 + i % 50 or count != i % 50:
            errors.append(f"wrong answer {dict(row)} / {count} at {i}")
        done += 2
    return done


def test_far_more_clients_than_max_connections_are_served_without_errors(pooled: Pooled) -> None:
    async def run() -> tuple[int, list[str], set[int], int, list[int]]:
        errors: list[str] = []
        pids: set[int] = set()
        engine = create_engine(pooled.shop_settings(database_pool_size=20))  # up to 40 connections
        try:
            counts = await asyncio.gather(
                *(_client(pooled, n, 2.0, errors, pids, cache=0) for n in range(CLIENTS)),
                *(_engine_client(engine, n, 2.0, errors) for n in range(60)),
            )
        finally:
            await engine.dispose()
        servers = int(pooled.cluster.psql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'shop'"))

        # The server connections keep no prepared statements behind (unnamed statements only).
        async def leftover() -> int:
            con = await pooled.connect()
            try:
                async with con.transaction():  # held across the sleep: each probe gets its own server
                    row = await con.fetchrow("SELECT count(*), pg_sleep(0.3) FROM pg_prepared_statements")
            finally:
                await con.close()
            return row[0]

        left = await asyncio.gather(*(leftover() for _ in range(POOL_SIZE)))
        return sum(counts), errors, pids, servers, left

    statements, errors, pids, servers, left = asyncio.run(run())
    assert not errors, f"{len(errors)} errors, e.g. {collections.Counter(errors).most_common(3)}"
    assert statements > 2000, f"only {statements} statements in 2 s"
    assert len(pids) <= POOL_SIZE < MAX_CONNECTIONS < CLIENTS
    assert servers <= POOL_SIZE, f"{servers} server connections for a pool of {POOL_SIZE}"
    assert left == [0] * POOL_SIZE, f"prepared statements left on the server connections: {left}"


def test_the_same_load_with_asyncpg_statement_cache_fails(pooled: Pooled) -> None:
    """The control: what the load above would catch (named, cached statements on another server connection)."""

    async def run() -> list[str]:
        errors: list[str] = []
        await asyncio.gather(*(_client(pooled, n, 1.0, errors, set(), cache=100) for n in range(30)))
        return errors

    errors = asyncio.run(run())
    assert any("prepared statement" in error for error in errors), errors[:3]
    assert statement_cache_args("pgbouncer")["statement_cache_size"] == 0


def test_the_shop_serves_the_realistic_mix_through_pgbouncer(
    pooled: Pooled, redis_server: RedisServer, tmp_path: Path
) -> None:
    before = int(pooled.cluster.psql("SELECT count(*) FROM orders", database="shop"))
    env = shop_env(
        pooled.bouncer.dsn("shop", driver="postgresql+asyncpg"), redis_server.url(5),
        SHOP_DATABASE_PASSWORD=pooled.password, SHOP_ADMIN_TOKEN="test-admin-token-not-a-secret",
    )  # fmt: skip
    server = ShopServer(env, tmp_path / "shop.log")
    server.start()
    try:
        profile = LoadProfile(name="load", rate=30, duration_s=5, storefront=False, p95_ms=1000)
        summary = run_k6(MIX_SCRIPT, profile.k6_env(server.url), timeout_s=profile.timeout_s)
    finally:
        server.stop()
    orders = int(pooled.cluster.psql("SELECT count(*) FROM orders", database="shop")) - before
    assert summary.requests > 100, summary
    assert summary.error_rate == 0, f"{summary.error_rate:.2%} failed; the shop's log: {server.log_path}"
    assert orders > 0, "no checkout went through"


def test_a_wrong_password_is_refused_and_a_new_one_works_after_sync_auth(pooled: Pooled) -> None:
    async def login(password: str) -> int:
        con = await pooled.connect(password)
        try:
            return await con.fetchval("SELECT 1")
        finally:
            await con.close()

    offset = pooled.bouncer.log.stat().st_size
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        asyncio.run(login("not-the-password"))
    assert "password authentication failed" in pooled.bouncer.log.read_text()[offset:]

    # A password change: PgBouncer takes the new verifier after sync_auth (a reload), the old one is refused.
    new = secrets.token_urlsafe(16)
    pooled.cluster.psql(f"ALTER ROLE shop PASSWORD '{new}'")
    old, pooled.password = pooled.password, new
    pid = pooled.bouncer.process.pid if pooled.bouncer.process else None
    pooled.bouncer.sync_auth(pooled.cluster, ["shop"])
    assert asyncio.run(login(new)) == 1
    with pytest.raises(asyncpg.PostgresError, match="authentication failed"):
        asyncio.run(login(old))
    assert pooled.bouncer.running() and pooled.bouncer.process and pooled.bouncer.process.pid == pid
    for path in (pooled.bouncer.config, pooled.bouncer.auth_file, pooled.bouncer.stats_pgpass):
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert new not in pooled.bouncer.auth_file.read_text()  # the verifier, never the password


def test_the_roles_settings_hold_through_pgbouncer_and_startup_settings_are_refused(pooled: Pooled) -> None:
    expected = DataSettings().shop_role_defaults()

    async def run() -> dict[str, str]:
        con = await pooled.connect()
        try:
            return {name: await con.fetchval(f"SELECT current_setting('{name}')") for name in expected}
        finally:
            await con.close()

    seen = asyncio.run(run())
    assert seen["plan_cache_mode"] == "force_custom_plan"
    assert seen["jit"] == "off"
    assert seen["statement_timeout"] == f"{DataSettings().statement_timeout_ms // 1000}s"
    assert seen["idle_in_transaction_session_timeout"] == f"{DataSettings().idle_in_transaction_timeout_ms // 1000}s"

    # Why they are on the role: PgBouncer refuses a session setting given at startup.
    with pytest.raises(asyncpg.PostgresError, match="unsupported startup parameter: plan_cache_mode"):
        asyncio.run(pooled.connect(server_settings={"plan_cache_mode": "force_custom_plan"}))


def test_the_exporter_reports_the_pool(pooled: Pooled, tmp_path: Path) -> None:
    exporter = PgBouncerExporter(
        tmp_path / "exporter", free_port(), pgbouncer_port=pooled.bouncer.port,
        user=pooled.bouncer.stats_user, pgpass_file=pooled.bouncer.stats_pgpass, database="shop",
    )  # fmt: skip
    exporter.start()
    try:
        assert exporter.running()
        body = httpx.get(exporter.metrics_url, timeout=10).text
        pid = exporter.process.pid if exporter.process else 0
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes() + Path(f"/proc/{pid}/environ").read_bytes()
    finally:
        exporter.stop()
    samples = {line.split(" ")[0]: float(line.split(" ")[1]) for line in body.splitlines() if line[:1] != "#"}
    assert samples['pgbouncer_database_max_connections{database="shop"}'] == POOL_SIZE
    assert samples['pgbouncer_pool_maxwait_seconds{database="shop",user="shop"}'] >= 0
    assert samples['pgbouncer_requests_total{database="shop"}'] > 0
    assert not any(key.startswith('pgbouncer_requests_total{database="pgbouncer"') for key in samples)
    stats_password = pooled.bouncer.stats_password_file.read_text().strip()
    assert stats_password.encode() not in cmdline
    assert not exporter.running()
