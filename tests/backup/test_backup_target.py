"""`LocalBackupTarget` end to end on a real PostgreSQL 15 cluster archiving into pgBackRest, the shop's schema and data.

One source cluster for the module (WAL archived every second, a heartbeat every 0.2 s), a folder
store and a key in a path with a space. The restore test starts the backend image built by
scripts/build-images.sh against the restored database.
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import redis

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.backup.crypto import generate_key_file
from shop_ops.backup.logical import BackupError
from shop_ops.backup.physical import PgBackRest, new_key_file
from shop_ops.backup.targets import LocalBackupTarget, LocalCartStore, LocalCluster
from shop_ops.resources.backup_store import BackupStoreResource
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.postgres import DatabaseTarget, PostgresResource
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from shop_ops.services.redis import RedisPasswords, cart_server

pytestmark = pytest.mark.services

PRODUCTS = 40
CARTS = 50
_order_ids = itertools.count(1)


@dataclass
class Source:
    cluster: PostgresCluster
    pgbackrest: PgBackRest
    base: Path
    key_file: Path
    target: LocalBackupTarget


def _target(
    base: Path, cluster: PostgresCluster, key_file: Path, docker_host: str, carts: LocalCartStore
) -> LocalBackupTarget:
    return LocalBackupTarget(
        backup_store=BackupStoreResource(folder=str(base / "store")),
        key_file=str(key_file),
        postgres=PostgresResource(environments={"staging": DatabaseTarget(port=cluster.port)}),
        containers=ContainersResource(docker_host=docker_host),
        clusters={
            "staging": LocalCluster(
                datadir=str(cluster.datadir), port=cluster.port, socket_dir=str(cluster.socket_dir),
                pgbackrest_dir=str(base / "staging" / "pgbackrest"),
            )
        },
        cart_stores={"staging": carts},
        scratch_dir=str(base / "scratch"),
        process_max=1,
        archive_timeout_seconds=1,
    )  # fmt: skip


def _cart_store(base: Path, started: list[RedisServer]) -> LocalCartStore:
    """staging's cart store (primary and replica, added to `started`) holding CARTS carts; its admin password
    in a 0600 file."""
    passwords = RedisPasswords(shop="shop-not-a-secret", admin="admin-not-a-secret")
    admin_file = base / "secrets" / "redis-admin"
    admin_file.write_text(passwords.admin + "\n")
    admin_file.chmod(0o600)
    primary = cart_server(base / "staging" / "carts", free_port(), passwords, maxmemory_mb=16)
    replica = cart_server(base / "staging" / "carts-replica", free_port(), passwords, 16, replica_of=primary.port)
    for server in (primary, replica):
        server.start()
        started.append(server)
    shop = redis.Redis(port=primary.port, username="shop", password=passwords.shop)
    for i in range(CARTS):
        shop.hset(f"cart:{i:032x}", mapping={"_": "1", str(i % PRODUCTS + 1): "2"})
    admin = redis.Redis(port=primary.port, username="admin", password=passwords.admin)
    assert admin.execute_command("WAIT", 1, 5000) == 1  # the replica has every cart
    return LocalCartStore(ports=[primary.port, replica.port], admin_password_file=str(admin_file))


@pytest.fixture(scope="module")
def source(docker_api) -> Iterator[Source]:
    base = Path(tempfile.mkdtemp(prefix="shop-ops backup target "))
    base.chmod(0o755)
    key_file = base / "secrets" / "backup.key"
    key_file.parent.mkdir(mode=0o711)
    new_key_file(key_file)
    cluster = PostgresCluster(datadir=base / "staging" / "data", port=free_port())
    pg = PgBackRest.for_cluster(cluster, "staging", base / "staging" / "pgbackrest", key_file, process_max=1)
    heartbeat = None
    cart_servers: list[RedisServer] = []
    try:
        carts = _cart_store(base, cart_servers)
        pg.start_new_cluster(cluster, archive_timeout=1)
        cluster.create_database("shop", owner="shop")
        url = cluster.dsn("shop", user="shop", driver="postgresql+asyncpg")
        upgrade(url)
        asyncio.run(seed_catalog(url, PRODUCTS))
        heartbeat = subprocess.Popen(
            [sys.executable, "-m", "shop_ops.backup.heartbeat", "--port", str(cluster.port), "--interval", "0.2"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        yield Source(cluster, pg, base, key_file, _target(base, cluster, key_file, docker_api.docker_host, carts))
    finally:
        for server in cart_servers:
            server.stop()
        if heartbeat is not None:
            heartbeat.terminate()
            heartbeat.wait(timeout=10)
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


def _order(cluster: PostgresCluster) -> tuple[int, datetime]:
    """One order in its own transaction; its id and commit time."""
    order_id = next(_order_ids)
    row = cluster.psql(
        "INSERT INTO orders (id, email, status, total_cents, idempotency_key, cart_id) "
        f"VALUES ({order_id}, 'drill@example.com', 'placed', {order_id * 100}, 'drill-{order_id}', 'cart-{order_id}') "
        "RETURNING id;",
        database="shop",
    )
    committed = cluster.psql(
        f"SELECT extract(epoch FROM pg_xact_commit_timestamp(xmin)) FROM orders WHERE id = {order_id}", database="shop"
    )
    assert row.splitlines()[0] == str(order_id)
    return order_id, datetime.fromtimestamp(float(committed), UTC)


def _stored_files(source: Source) -> list[Path]:
    return [p for p in (source.base / "store").rglob("*") if p.is_file()]


def test_backup_restore_test_and_drill(source: Source, built: dict) -> None:
    target, cluster = source.target, source.cluster
    backend = next(i["ref"] for i in built["images"] if i["name"] == "backend")
    early = [_order(cluster) for _ in range(3)]
    day = date(2026, 11, 29)
    lines: list[str] = []

    report = target.back_up("staging", day, backend, "9.9.9 (test)", lines.append)
    meta = report.metadata()
    assert meta["physical_kind"] == "full" and meta["physical_label"].endswith("F")
    assert meta["rows"] >= PRODUCTS + 3 and meta["dump_bytes"] > 0 and meta["compression_ratio"] > 1
    assert meta["release"] == "9.9.9 (test)" and meta["backend_image"] == backend
    assert Path(meta["location"]).is_file() and Path(meta["location"]).is_relative_to(source.base / "store")
    # Encrypted at rest; the key is nowhere in the store or the metadata.
    assert b"PGDMP" not in Path(meta["location"]).read_bytes()[:64]
    key = source.key_file.read_text().strip()
    assert not [p for p in _stored_files(source) if key.encode() in p.read_bytes()]
    assert key not in str(meta) and key not in "\n".join(lines)

    restored = target.restore_test("staging", day, lines.append)
    assert restored.catalog_products == PRODUCTS and restored.rows == meta["rows"]
    assert restored.rto_seconds > restored.restore_seconds > 0 and restored.restored_bytes > 0
    # The cart store's RDB beside the dump, encrypted, restored into a scratch redis-server: every cart back.
    assert meta["carts"] == CARTS and restored.carts_restored == CARTS
    assert Path(meta["carts_location"]).parent == Path(meta["location"]).parent
    assert Path(meta["carts_location"]).read_bytes()[:5] != b"REDIS"
    assert target.store().entry("staging", day).verified
    assert not list((source.base / "scratch").iterdir())  # the scratch cluster and files are gone

    # PITR: a target between two commits; the drill must land exactly there.
    late = [_order(cluster) for _ in range(4)]
    time.sleep(0.3)
    between = late[1][1] + (late[2][1] - late[1][1]) / 2
    time.sleep(2.5)  # archive_timeout 1 s: the WAL holding the later orders is archived
    drill = target.drill("staging", between, lines.append)
    assert drill.orders_checked == len(early) + 2, drill
    assert drill.recovered_to is not None and drill.recovered_to <= between
    assert drill.heartbeat_rows > 10 and 0 < drill.rpo_seconds < 10, drill
    assert drill.rto_seconds > 0

    # Default target: a random time the archive covers.
    random_drill = target.drill("staging", None, lines.append)
    assert random_drill.target_time <= datetime.now(UTC)


def test_the_cart_store_is_backed_up_beside_the_dump_and_restore_tested(source: Source) -> None:
    target = source.target
    day = date(2026, 11, 26)
    lines: list[str] = []
    meta = target.back_up("staging", day, None, "none", lines.append).metadata()
    assert meta["carts"] == CARTS and meta["carts_rdb_bytes"] > 0
    assert any("cart store RDB from its replica" in line for line in lines), lines
    stored = Path(meta["carts_location"])
    assert stored.parent == Path(meta["location"]).parent and stored.read_bytes()[:5] != b"REDIS"
    restored = target.restore_test("staging", day, lines.append)
    assert restored.carts_restored == CARTS and restored.metadata()["carts_restored"] == CARTS


def test_a_corrupted_or_foreign_backup_fails_its_restore_test(source: Source) -> None:
    target = source.target
    day = date(2026, 11, 28)
    report = target.back_up("staging", day, None, "none", lambda _line: None)
    stored = Path(report.metadata()["location"])

    other_key = source.base / "other.key"
    generate_key_file(other_key)
    foreign = target.model_copy(update={"key_file": str(other_key)})
    with pytest.raises(BackupError, match="another key"):
        foreign.restore_test("staging", day, lambda _line: None)

    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0xFF
    stored.chmod(0o600)
    stored.write_bytes(bytes(data))
    with pytest.raises(BackupError, match="sha256"):
        target.restore_test("staging", day, lambda _line: None)
    entry = target.store().entry("staging", day)
    assert entry is not None and not entry.verified  # still listed, never marked good
    assert not list((source.base / "scratch").iterdir())


def test_a_missing_wal_segment_fails_the_drill_naming_it(source: Source) -> None:
    """Last in this module: it damages the shared repository (a segment after the newest backup's start goes)."""
    target, pg = source.target, source.pgbackrest
    report = target.back_up("staging", date(2026, 11, 27), None, "none", lambda _line: None)
    wal_start = report.metadata()["physical_wal_start"]
    [_order(source.cluster) for _ in range(2)]
    time.sleep(2.5)  # archive_timeout 1 s: later segments reach the repository
    archive = pg.repo / "archive" / "staging"
    later = sorted(p for p in archive.rglob("*") if p.is_file() and p.name[:24] > wal_start and "-" in p.name)
    assert len(later) >= 2, later
    victim = later[0]
    victim.unlink()
    with pytest.raises(BackupError, match=rf"WAL segment {victim.name[:24]} is missing"):
        target.drill("staging", None, lambda _line: None)
    assert target.archive_status("staging").ok is False
    assert victim.name[:24] in target.archive_status("staging").describe()
