"""The cart store's RDB snapshot (shop_ops/backup/carts.py) against real cart servers: taken from the replica,
fingerprinted, restored into a scratch redis-server with the same carts, and a changed snapshot refused."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from shop_ops.backup.carts import pick_source, snapshot_carts, take_rdb, verify_restored
from shop_ops.backup.logical import BackupError
from shop_ops.services.processes import RedisServer, free_port
from shop_ops.services.redis import RedisPasswords, admin_client, cart_server

pytestmark = pytest.mark.services

CARTS = 300


@pytest.fixture(scope="module")
def cart_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RedisServer, RedisServer, RedisPasswords]]:
    """A cart store (primary and an in-sync replica) holding CARTS carts."""
    folder = tmp_path_factory.mktemp("carts-backup")
    passwords = RedisPasswords(shop=secrets.token_urlsafe(16), admin=secrets.token_urlsafe(16))
    primary = cart_server(folder / "carts", free_port(), passwords, maxmemory_mb=32)
    replica = cart_server(folder / "replica", free_port(), passwords, maxmemory_mb=32, replica_of=primary.port)
    try:
        primary.start()
        replica.start()
        shop = redis.Redis(port=primary.port, username="shop", password=passwords.shop)
        with shop.pipeline(transaction=False) as pipe:
            for i in range(CARTS):
                key = f"cart:{i:032x}"
                pipe.hset(key, mapping={"_": "1", str(i % 50 + 1): str(i % 7 + 1)})
                pipe.expire(key, 7 * 24 * 3600)
            pipe.execute()
        with admin_client(primary.port, passwords) as admin:
            admin.execute_command("WAIT", 1, 5000)
        yield primary, replica, passwords
    finally:
        replica.stop()
        primary.stop()


def test_a_snapshot_from_the_replica_restores_every_cart(cart_store, tmp_path: Path):
    primary, replica, passwords = cart_store
    assert pick_source([primary.port, replica.port], passwords.admin) == (replica.port, "replica")
    snap = snapshot_carts([primary.port, replica.port], passwords.admin, tmp_path / "carts.rdb", tmp_path / "work")
    assert snap.source_port == replica.port and snap.bytes > 0
    assert snap.path.read_bytes()[:5] == b"REDIS"
    assert snap.fingerprint.carts == CARTS and len(snap.fingerprint.sample) >= 20
    restored = verify_restored(snap.path, snap.fingerprint, tmp_path / "restore")
    assert restored == snap.fingerprint


def test_a_snapshot_that_differs_from_its_fingerprint_is_refused(cart_store, tmp_path: Path):
    primary, replica, passwords = cart_store
    snap = snapshot_carts([replica.port, primary.port], passwords.admin, tmp_path / "before.rdb", tmp_path / "work")
    # One sampled cart changes and one more cart appears; a snapshot taken now is not the recorded one.
    changed = sorted(snap.fingerprint.sample)[0]
    shop = redis.Redis(port=primary.port, username="shop", password=passwords.shop)
    shop.hset(changed, "999", "3")
    take_rdb(primary.port, passwords.admin, tmp_path / "after.rdb")
    with pytest.raises(BackupError, match=f"1 of {len(snap.fingerprint.sample)} sampled carts differ.*{changed}"):
        verify_restored(tmp_path / "after.rdb", snap.fingerprint, tmp_path / "restore")
    shop.hset(f"cart:{'f' * 32}", "_", "1")
    take_rdb(primary.port, passwords.admin, tmp_path / "more.rdb")
    with pytest.raises(BackupError, match=f"holds {CARTS + 1} carts, the backup recorded {CARTS}"):
        verify_restored(tmp_path / "more.rdb", snap.fingerprint, tmp_path / "restore2")
    shop.delete(f"cart:{'f' * 32}")
    shop.hdel(changed, "999")


def test_a_wrong_admin_password_fails_naming_the_fix(cart_store, tmp_path: Path):
    primary, replica, _ = cart_store
    with pytest.raises(BackupError, match=r"no cart server answers.*admin password file"):
        pick_source([primary.port, replica.port], "not-the-password")
    with pytest.raises(BackupError, match="redis-cli --rdb"):
        take_rdb(primary.port, "not-the-password", tmp_path / "x.rdb", timeout=20)
