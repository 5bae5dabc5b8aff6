"""A streaming replica of PostgreSQL: built from its primary, kept, rebuilt when its slot is gone, serving the
shop's reporting reads (falling back to the primary), and promoted by hand to serve the shop."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import URL, make_url

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.services.exporters import PostgresExporter
from shop_ops.services.processes import PostgresCluster, PostgresReplica, RedisServer, ServiceError, free_port
from tests.support import ShopServer, shop_env, wait_until

pytestmark = pytest.mark.services

QUERIES = Path(__file__).resolve().parents[2] / "infra" / "prometheus" / "postgres-exporter" / "queries.yaml"
PASSWORD = "replica-test-shop-password-not-a-secret"
ADMIN_TOKEN = "replica-test-admin-token-not-a-secret"
DATABASE = "shop"
# A Redis database of its own: the session's Redis serves other test shops (other catalogs) too.
REDIS_DB = 11


@dataclass
class Tier:
    """A primary with its streaming replica (TCP logins need passwords, as in the local stack) and a shop database."""

    base: Path
    primary: PostgresCluster
    replica: PostgresReplica
    password_file: Path

    def url(self, cluster: PostgresCluster) -> str:
        """The shop's URL of `cluster` (no password: the shop reads it from its file)."""
        return f"postgresql+asyncpg://shop@127.0.0.1:{cluster.port}/{DATABASE}"

    def url_with_password(self) -> URL:
        return make_url(self.url(self.primary)).set(password=PASSWORD)

    def insert_order(self) -> None:
        """A real (not synthetic) order of 1000 cents, written on the primary."""
        key = uuid.uuid4().hex
        self.primary.psql(
            "INSERT INTO orders (email, status, total_cents, idempotency_key, cart_id) "
            f"VALUES ('replica@example.com', 'placed', 1000, '{key}', 'cart-{key}')",
            DATABASE,
        )

    def orders_on(self, cluster: PostgresCluster) -> int:
        return int(cluster.psql("SELECT count(*) FROM orders WHERE NOT synthetic", DATABASE))


@pytest.fixture(scope="module")
def tier() -> Iterator[Tier]:
    # Not under pytest's 0700 temp folder: as root, PostgreSQL runs as the postgres OS user.
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-replica-"))
    base.chmod(0o755)
    primary = PostgresCluster(datadir=base / "primary", port=free_port(), tcp_auth="scram-sha-256")
    replica = PostgresReplica(
        datadir=base / "replica", port=free_port(), tcp_auth="scram-sha-256", primary=primary,
        password_file=base / "secrets" / "replication-password", slot="shop_replica",
    )  # fmt: skip
    password_file = base / "secrets" / "db-password"
    try:
        primary.init()
        primary.start()
        primary.psql(f"CREATE ROLE shop LOGIN PASSWORD '{PASSWORD}'")
        primary.create_database(DATABASE, owner="shop")
        password_file.parent.mkdir()
        password_file.write_text(PASSWORD + "\n")
        password_file.chmod(0o600)
        tier = Tier(base, primary, replica, password_file)
        upgrade(tier.url_with_password())
        asyncio.run(seed_catalog(tier.url_with_password(), 50))
        made = replica.create()
        assert "built with pg_basebackup" in made, made
        yield tier
    finally:
        replica.stop()
        primary.stop()
        shutil.rmtree(base, ignore_errors=True)


def start_shop(
    tier: Tier, redis_server: RedisServer, database: PostgresCluster, replica: bool, log: Path
) -> ShopServer:
    extra = {"SHOP_DATABASE_PASSWORD_FILE": str(tier.password_file), "SHOP_ADMIN_TOKEN": ADMIN_TOKEN}
    if replica:
        extra["SHOP_DATABASE_REPLICA_URL"] = tier.url(tier.replica)
    server = ShopServer(shop_env(tier.url(database), redis_server.url(REDIS_DB), **extra), log)
    server.start()
    return server


@pytest.fixture(scope="module")
def shop(tier: Tier, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ShopServer]:
    """The real backend on the primary, its reporting reads on the replica."""
    server = start_shop(tier, redis_server, tier.primary, True, tmp_path_factory.mktemp("shop") / "shop.log")
    yield server
    server.stop()


def order_statistics(server: ShopServer) -> int:
    """Real orders of the last day and the next, as the admin statistics count them."""
    now = datetime.now(UTC)
    params = {"since": (now - timedelta(days=1)).isoformat(), "until": (now + timedelta(days=1)).isoformat()}
    res = httpx.get(
        f"{server.url}/api/admin/statistics/orders", params=params,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10,
    )  # fmt: skip
    assert res.status_code == 200, res.text
    return res.json()["orders"]


def metric(server: ShopServer, name: str, label: str = "") -> float:
    """The sum of a counter's samples (those whose labels hold `label`) on /metrics; 0 when it has none yet."""
    total = 0.0
    for line in httpx.get(f"{server.url}/metrics", timeout=10).text.splitlines():
        found = re.fullmatch(r"(\w+)(\{.*\})? (\S+)", line)
        if found and found.group(1) == name and label in (found.group(2) or ""):
            total += float(found.group(3))
    return total


@contextmanager
def frozen(cluster: PostgresCluster) -> Iterator[None]:
    """The cluster hung as a frozen host looks: its postmaster and every child stopped (SIGSTOP), then resumed."""
    postmaster = int((cluster.datadir / "postmaster.pid").read_text().split()[0])
    children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout.split()
    pids = [postmaster, *map(int, children)]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)


def test_writes_on_the_primary_stream_to_the_replica_which_refuses_writes(tier: Tier) -> None:
    primary, replica = tier.primary, tier.replica
    assert replica.in_recovery() and replica.streaming()
    assert primary.psql("SELECT application_name, state FROM pg_stat_replication") == "shop_replica|streaming"
    primary.psql("UPDATE products SET stock = 4242 WHERE id = (SELECT min(id) FROM products)", DATABASE)
    wait_until(
        "the primary's update on the replica",
        lambda: replica.psql("SELECT stock FROM products ORDER BY id LIMIT 1", DATABASE) == "4242",
        timeout=10, step=0.1,
    )  # fmt: skip
    assert replica.lag_seconds() == 0.0
    with pytest.raises(ServiceError, match="read-only transaction"):
        replica.psql("UPDATE products SET stock = 1", DATABASE)
    # The replication password: only in 0600 files, never in the replica's configuration.
    assert tier.replica.password_file.stat().st_mode & 0o777 == 0o600
    assert tier.replica.passfile.stat().st_mode & 0o777 == 0o600
    password = tier.replica.password_file.read_text().strip()
    conninfo = (replica.datadir / "postgresql.auto.conf").read_text()
    assert "passfile=" in conninfo and password not in conninfo and "password=" not in conninfo


def test_the_exporter_serves_what_the_replica_alerts_read(tier: Tier, tmp_path: Path) -> None:
    """prometheus-postgres-exporter 0.11 with the custom queries, as the shop's role (no pg_monitor)."""
    exporters = {
        name: PostgresExporter(
            tmp_path / name,
            free_port(),
            dsn=f"postgresql://shop@127.0.0.1:{cluster.port}/{DATABASE}",
            password_file=tier.password_file,
            queries=QUERIES,
        )
        for name, cluster in (("primary", tier.primary), ("replica", tier.replica))
    }
    try:
        for exporter in exporters.values():
            exporter.start()

        def sample(name: str, metric_name: str, label: str = "") -> float:
            """The first sample of `metric_name` (whose labels hold `label`) the `name` exporter serves."""
            for line in httpx.get(exporters[name].metrics_url, timeout=10).text.splitlines():
                found = re.fullmatch(r"(\w+)(\{.*\})? (\S+)", line)
                if found and found.group(1) == metric_name and label in (found.group(2) or ""):
                    return float(found.group(3))
            raise AssertionError(f"{metric_name} {label} not served by the {name} exporter")

        assert sample("replica", "pg_replication_is_replica") == 1
        assert sample("replica", "pg_replication_lag") == 0
        assert sample("primary", "pg_replication_is_replica") == 0
        assert sample("primary", "pg_replication_slots_active", 'slot_name="shop_replica"') == 1
        tier.replica.psql("SELECT pg_wal_replay_pause()")
        try:
            tier.insert_order()
            wait_until(
                "the replica's received WAL ahead of its replay",
                lambda: sample("replica", "pg_replication_lag") > 0, timeout=10, step=0.2,
            )  # fmt: skip
        finally:
            tier.replica.psql("SELECT pg_wal_replay_resume()")
        tier.replica.wait_caught_up(timeout=10)
        assert sample("replica", "pg_replication_lag") == 0
    finally:
        for exporter in exporters.values():
            exporter.stop()


def test_create_starts_an_existing_replica_and_rebuilds_one_whose_slot_is_gone(tier: Tier) -> None:
    primary, replica = tier.primary, tier.replica
    marker = replica.datadir / "shop-ops-test-marker"  # stays as long as the folder is not rebuilt
    marker.write_text("kept\n")
    assert replica.create().endswith("already running")
    replica.stop()
    assert replica.create().endswith(": started")
    assert marker.exists()

    replica.stop()
    primary.psql("SELECT pg_drop_replication_slot('shop_replica')")
    made = replica.create()
    assert "rebuilt, because the primary" in made and "has no replication slot shop_replica" in made, made
    assert not marker.exists()
    assert primary.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'shop_replica'") == "t"
    tier.insert_order()
    replica.wait_caught_up(timeout=10)
    assert tier.orders_on(replica) == tier.orders_on(primary)


def test_admin_statistics_are_read_on_the_replica(tier: Tier, shop: ShopServer) -> None:
    tier.insert_order()
    tier.replica.wait_caught_up(timeout=10)
    before = order_statistics(shop)
    assert before == tier.orders_on(tier.primary)

    # Replay paused: an order written now is on the primary only, and the statistics do not see it.
    tier.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        tier.insert_order()
        assert tier.orders_on(tier.primary) == before + 1
        assert order_statistics(shop) == before
        sessions = tier.replica.psql(
            "SELECT DISTINCT usename FROM pg_stat_activity WHERE application_name = 'shop-reporting'", DATABASE
        )
        assert sessions == "shop"
    finally:
        tier.replica.psql("SELECT pg_wal_replay_resume()")
    tier.replica.wait_caught_up(timeout=10)
    assert order_statistics(shop) == before + 1
    assert metric(shop, "shop_db_reporting_reads_total") >= 3
    assert metric(shop, "shop_db_replica_fallbacks_total") == 0


def test_statistics_fall_back_to_the_primary_while_the_replica_is_down(tier: Tier, shop: ShopServer) -> None:
    tier.replica.stop()
    try:
        tier.insert_order()
        assert order_statistics(shop) == tier.orders_on(tier.primary)  # answered, from the primary
        assert metric(shop, "shop_db_replica_fallbacks_total") >= 1
        log = shop.log_path.read_text()
        assert "replica unavailable: reporting reads go to the primary" in log
        assert PASSWORD not in log
    finally:
        assert tier.replica.create().endswith(": started")
    # Back on the replica by itself: paused replay shows which database answers.
    tier.replica.wait_caught_up(timeout=10)
    tier.replica.psql("SELECT pg_wal_replay_pause()")
    try:
        tier.insert_order()
        on_replica = tier.orders_on(tier.primary) - 1
        wait_until("statistics read on the replica again", lambda: order_statistics(shop) == on_replica, timeout=10)
    finally:
        tier.replica.psql("SELECT pg_wal_replay_resume()")


def test_a_hung_replica_costs_a_statistics_read_the_timeout_not_an_error(tier: Tier, shop: ShopServer) -> None:
    replica_reads = metric(shop, "shop_db_reporting_reads_total", 'database="replica"')
    with frozen(tier.replica):
        tier.insert_order()
        started = time.monotonic()
        assert order_statistics(shop) == tier.orders_on(tier.primary)  # from the primary
        elapsed = time.monotonic() - started
        assert elapsed < 3.5, f"a statistics read took {elapsed:.1f}s with the replica hung (timeout 2 s)"
    # Back on the replica by itself once it answers again (after the 5 s it is left alone).

    def read_on_replica() -> bool:
        order_statistics(shop)
        return metric(shop, "shop_db_reporting_reads_total", 'database="replica"') > replica_reads

    wait_until("statistics read on the replica again", read_on_replica, timeout=10)


def test_the_promoted_replica_serves_reads_and_checkout(
    tier: Tier, shop: ShopServer, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> None:
    client = httpx.Client(base_url=shop.url, timeout=10)
    product = next(p for p in client.get("/api/products", params={"limit": 50}).json()["items"] if p["stock"] >= 2)
    cart_id = client.post("/api/carts").json()["id"]
    assert client.post(f"/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 1}).is_success
    res = client.post("/api/checkout", json={"cart_id": cart_id, "email": "before@example.com"},
                      headers={"Idempotency-Key": f"before-{uuid.uuid4()}"})  # fmt: skip
    assert res.status_code == 201, res.text
    before = res.json()
    tier.replica.wait_caught_up(timeout=10)
    orders_before = tier.orders_on(tier.primary)
    shop.stop()

    # The primary is lost; the replica is promoted by hand and the shop pointed at it (its DSN).
    tier.primary.stop()
    tier.replica.promote()
    assert not tier.replica.in_recovery()
    with pytest.raises(ServiceError, match="it was promoted and is a primary now"):
        tier.replica.create()  # never silently started again as a replica
    promoted = start_shop(tier, redis_server, tier.replica, False, tmp_path_factory.mktemp("promoted") / "shop.log")
    try:
        with httpx.Client(base_url=promoted.url, timeout=10) as after:
            assert after.get(f"/api/orders/{before['id']}").json() == before  # written before the promotion
            assert after.get(f"/api/products/{product['id']}").json()["stock"] == product["stock"] - 1
            cart_id = after.post("/api/carts").json()["id"]
            assert after.post(
                f"/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 1}
            ).is_success
            res = after.post("/api/checkout", json={"cart_id": cart_id, "email": "after@example.com"},
                             headers={"Idempotency-Key": f"after-{uuid.uuid4()}"})  # fmt: skip
            assert res.status_code == 201, res.text
            assert after.get(f"/api/products/{product['id']}").json()["stock"] == product["stock"] - 2
        assert tier.orders_on(tier.replica) == orders_before + 1
        assert order_statistics(promoted) == orders_before + 1
    finally:
        promoted.stop()
        client.close()

    # A new replica of the promoted one (the runbook's last step) has what was written after the promotion.
    second = PostgresReplica(
        datadir=tier.base / "replica2", port=free_port(), tcp_auth="scram-sha-256", primary=tier.replica,
        password_file=tier.replica.password_file, slot="shop_replica_2",
    )  # fmt: skip
    try:
        assert "built with pg_basebackup" in second.create()
        second.wait_caught_up(timeout=10)
        assert tier.orders_on(second) == orders_before + 1
        assert second.in_recovery() and second.streaming()
    finally:
        second.stop()
