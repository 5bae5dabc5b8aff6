"""Logical backups against real PostgreSQL 15: dump + fingerprint at one snapshot, restore checks, failures."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from shop_ops.backup.crypto import CHUNK_PLAIN, MAGIC, CryptoError, generate_key_file, key_id, load_key
from shop_ops.backup.fingerprint import Fingerprint, compute_fingerprint
from shop_ops.backup.logical import (
    BackupError,
    _client_args,
    _client_env,
    dump_with_fingerprint,
    restore_and_verify,
    sha256_of,
)
from shop_ops.resources.postgres import DatabaseTarget
from shop_ops.services.processes import PostgresCluster
from tests.support import running_cluster

pytestmark = pytest.mark.services

_names = itertools.count(1)

SCHEMA = """
CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, price numeric(10, 2), note text,
                    created timestamptz DEFAULT '2026-01-02 03:04:05+02');
CREATE TABLE events (kind text, payload jsonb, at timestamptz);  -- no primary key
CREATE TABLE empty_one (x int);
"""
ITEMS = ["(1, 'tea', 3.50, NULL)", "(2, 'mug', 12.00, '')", "(3, 'pot', NULL, 'with \"quotes\", commas')"]
# Duplicate rows and NULLs in the table without a key.
EVENTS = [
    "('view', '{\"id\": 1}', '2026-03-01 10:00+00')",
    "('view', '{\"id\": 1}', '2026-03-01 10:00+00')",
    "(NULL, NULL, NULL)",
    "('cart', '{\"id\": [2, 3]}', NULL)",
]


def small_sql(order: slice = slice(None)) -> str:
    return (
        SCHEMA
        + f"INSERT INTO items (id, name, price, note) VALUES {', '.join(ITEMS[order])};"
        + f"INSERT INTO events VALUES {', '.join(EVENTS[order])};"
    )


def target(postgres: PostgresCluster, database: str, password_file: Path | None = None) -> DatabaseTarget:
    return DatabaseTarget(
        port=postgres.port, database=database, user=postgres.user,
        password_file=str(password_file) if password_file else None,
    )  # fmt: skip


def new_db(postgres: PostgresCluster, sql: str) -> DatabaseTarget:
    name = f"bk_{next(_names)}_{os.getpid()}"
    postgres.create_database(name)
    postgres.psql(sql, database=name)
    return target(postgres, name)


def live_fingerprint(db: DatabaseTarget) -> Fingerprint:
    conn = db.connect()
    try:
        return compute_fingerprint(conn)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def scratch() -> Iterator[PostgresCluster]:
    """A second cluster to restore into, as the restore test's temporary one."""
    with running_cluster("shop-ops-test-scratch-") as cluster:
        yield cluster


@pytest.fixture(scope="module")
def small(postgres: PostgresCluster) -> DatabaseTarget:
    return new_db(postgres, small_sql())


@pytest.fixture(scope="module")
def small_backup(small: DatabaseTarget, tmp_path_factory: pytest.TempPathFactory):
    return dump_with_fingerprint(small, tmp_path_factory.mktemp("small") / "small.dump")


@pytest.fixture(scope="module")
def big(postgres: PostgresCluster) -> DatabaseTarget:
    """Enough rows that pg_dump's output spans many chunks, so a kill lands halfway.

    `zz_tail` is dumped after `lines`: pg_dump still has a query to send after the first
    chunks are out (a COPY may already sit whole in the socket's buffers).
    """
    return new_db(
        postgres,
        "CREATE TABLE lines (id bigserial PRIMARY KEY, body text);"
        "INSERT INTO lines (body) SELECT md5(i::text) || md5((i * 7)::text) FROM generate_series(1, 60000) i;"
        "CREATE TABLE zz_tail (x int); INSERT INTO zz_tail VALUES (1), (2);",
    )


def restore_databases(scratch: PostgresCluster) -> list[str]:
    return scratch.psql("SELECT datname FROM pg_database WHERE datname LIKE 'restore_%'").split()


def test_dump_restores_to_the_same_fingerprint(small_backup, scratch: PostgresCluster) -> None:
    backup = small_backup
    assert os.listdir(backup.path.parent) == ["small.dump"]  # no partial file left beside it
    assert backup.bytes == backup.path.stat().st_size > 0
    assert backup.sha256 == sha256_of(backup.path)
    assert backup.seconds > 0
    assert backup.fingerprint.tables.keys() == {"items", "events", "empty_one"}
    assert backup.fingerprint.tables["events"][0] == 4
    assert backup.fingerprint.tables["empty_one"] == (0, "0")
    assert Fingerprint.from_json(backup.fingerprint.to_json()) == backup.fingerprint

    result = restore_and_verify(backup.path, backup.fingerprint, scratch, sha256=backup.sha256)
    assert result.fingerprint == backup.fingerprint
    assert result.restored_bytes > 0
    assert result.database not in restore_databases(scratch)  # dropped after the check


def test_fingerprint_follows_content_not_order(postgres: PostgresCluster, small: DatabaseTarget) -> None:
    original = live_fingerprint(small)
    # The same rows inserted in the opposite order (and so laid out differently on disk).
    copy = new_db(postgres, small_sql(slice(None, None, -1)))
    assert live_fingerprint(copy) == original

    # One value of one row: NULL -> '' (the row count stays, only the hash can tell).
    postgres.psql("UPDATE items SET note = '' WHERE id = 1", database=copy.database)
    assert original.diff(live_fingerprint(copy)) == ["table items: hash differs (3 rows each)"]
    postgres.psql("UPDATE items SET note = NULL WHERE id = 1", database=copy.database)
    assert live_fingerprint(copy) == original
    # One of two identical rows gone from the table without a key.
    postgres.psql("DELETE FROM events WHERE ctid = (SELECT min(ctid) FROM events WHERE kind = 'view')", copy.database)
    assert original.diff(live_fingerprint(copy)) == ["table events: rows 4 -> 3"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_dump_and_fingerprint_agree_while_writes_continue(
    encrypted: bool, big: DatabaseTarget, scratch: PostgresCluster, tmp_path: Path
) -> None:
    inserted = 0
    stop = threading.Event()

    def writer() -> None:
        nonlocal inserted
        conn = big.connect()
        conn.autocommit = True
        with conn.cursor() as cur:
            while not stop.is_set():
                cur.execute("INSERT INTO lines (body) VALUES ('written during the dump')")
                inserted += 1
        conn.close()

    seen_at_start: list[int] = []

    def during_dump(written: int, proc: subprocess.Popen[bytes]) -> None:
        # The snapshot is taken: make sure some rows commit after it, before pg_dump ends.
        if not seen_at_start:
            seen_at_start.append(inserted)
            deadline = time.monotonic() + 10
            while inserted < seen_at_start[0] + 50 and time.monotonic() < deadline:
                time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        key = bytes(range(32)) if encrypted else None
        backup = dump_with_fingerprint(big, tmp_path / "big.dump", on_progress=during_dump, key=key)
    finally:
        stop.set()
        thread.join()
    live = live_fingerprint(big)
    assert inserted >= seen_at_start[0] + 50
    assert live.tables["lines"][0] > backup.fingerprint.tables["lines"][0] >= 60000

    if encrypted:
        assert backup.plain_bytes > 2 * CHUNK_PLAIN  # several chunks, streamed while pg_dump wrote
    result = restore_and_verify(backup.path, backup.fingerprint, scratch, sha256=backup.sha256, key=key)
    assert result.fingerprint == backup.fingerprint != live


@pytest.mark.parametrize("how", ["killed", "connection terminated", "killed, encrypted"])
def test_a_failed_dump_leaves_nothing_and_names_the_cause(
    how: str, big: DatabaseTarget, postgres: PostgresCluster, tmp_path: Path
) -> None:
    halfway: list[int] = []

    def fail(written: int, proc: subprocess.Popen[bytes]) -> None:
        if halfway:
            return
        halfway.append(written)
        if how.startswith("killed"):
            proc.send_signal(signal.SIGKILL)
        else:
            postgres.psql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                f"WHERE application_name = 'pg_dump' AND datname = '{big.database}'"
            )

    key = bytes(32) if how.endswith("encrypted") else None
    with pytest.raises(BackupError) as failed:
        dump_with_fingerprint(big, tmp_path / "big.dump", on_progress=fail, key=key)
    assert halfway and halfway[0] < 1_000_000  # it failed after a first chunk, far from the end
    assert os.listdir(tmp_path) == []
    message = str(failed.value)
    assert f"pg_dump of postgres@127.0.0.1:{big.port}/{big.database} failed" in message
    if how.startswith("killed"):
        assert "killed by signal SIGKILL" in message
    else:
        assert "exited 1" in message and "terminat" in message


def test_a_dump_of_a_missing_database_fails_with_the_reason(postgres: PostgresCluster, tmp_path: Path) -> None:
    missing = target(postgres, "no_such_database")
    with pytest.raises(BackupError, match='database "no_such_database" does not exist'):
        dump_with_fingerprint(missing, tmp_path / "x.dump")
    assert os.listdir(tmp_path) == []


def test_a_truncated_or_corrupted_dump_fails_the_restore_check(
    small_backup, scratch: PostgresCluster, tmp_path: Path
) -> None:
    data = small_backup.path.read_bytes()
    truncated = tmp_path / "truncated.dump"
    truncated.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(BackupError, match=r"truncated or corrupted") as failed:
        restore_and_verify(truncated, small_backup.fingerprint, scratch)
    assert "pg_restore" in str(failed.value) and "end of file" in str(failed.value)
    assert restore_databases(scratch) == []  # the half-restored scratch database is gone

    flipped = tmp_path / "flipped.dump"
    flipped.write_bytes(data[:-10] + bytes([data[-10] ^ 0xFF]) + data[-9:])
    with pytest.raises(BackupError, match=r"is corrupted: sha256 [0-9a-f]{64} differs from the recorded"):
        restore_and_verify(flipped, small_backup.fingerprint, scratch, sha256=small_backup.sha256)


def test_a_wrong_fingerprint_is_reported_table_by_table(small_backup, scratch: PostgresCluster) -> None:
    tables = dict(small_backup.fingerprint.tables)
    rows, digest = tables["items"]
    tables["items"] = (rows + 1, digest)
    tables["events"] = (tables["events"][0], "12345")
    del tables["empty_one"]
    tables["gone"] = (7, "1")
    with pytest.raises(BackupError) as failed:
        restore_and_verify(small_backup.path, Fingerprint(tables), scratch)
    assert str(failed.value).endswith(
        "does not match its fingerprint: table empty_one: extra (not in the expected fingerprint); "
        "table events: hash differs (4 rows each); table gone: missing; table items: rows 4 -> 3"
    )
    assert restore_databases(scratch) == []


def test_passwords_stay_off_command_lines_and_messages(postgres: PostgresCluster, tmp_path: Path) -> None:
    secret = tmp_path / "db-password"
    secret.write_text("s3cret-pw\n")
    db = target(postgres, "no_such_database", secret)
    assert "s3cret-pw" not in repr(db) and "s3cret-pw" not in " ".join(_client_args(db))
    assert _client_env(db)["PGPASSWORD"] == "s3cret-pw"
    with pytest.raises(BackupError) as failed:
        dump_with_fingerprint(db, tmp_path / "dumps" / "x.dump")
    assert "s3cret-pw" not in str(failed.value)


# --- encrypted dumps ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "backup.key"
    generate_key_file(path)
    return path


@pytest.fixture(scope="module")
def encrypted_backup(small: DatabaseTarget, key_file: Path, tmp_path_factory: pytest.TempPathFactory):
    return dump_with_fingerprint(small, tmp_path_factory.mktemp("encrypted") / "small.dump.enc", key=load_key(key_file))


def test_an_encrypted_dump_restores_to_the_same_fingerprint(
    encrypted_backup, small_backup, key_file: Path, scratch: PostgresCluster, tmp_path: Path
) -> None:
    backup, key = encrypted_backup, load_key(key_file)
    data = backup.path.read_bytes()
    assert os.listdir(backup.path.parent) == ["small.dump.enc"]
    assert data.startswith(MAGIC) and b"PGDMP" not in data  # pg_dump's archive is not in clear
    assert backup.bytes == len(data) > backup.plain_bytes > 0  # header and tags on top of pg_dump's output
    assert backup.sha256 == sha256_of(backup.path)  # over what was written: checks the stored object
    assert backup.key_id == key_id(key) and backup.encrypted and not small_backup.encrypted
    assert small_backup.plain_bytes == small_backup.bytes
    assert backup.fingerprint == small_backup.fingerprint

    workdir = tmp_path / "restore scratch"
    result = restore_and_verify(
        backup.path, backup.fingerprint, scratch, sha256=backup.sha256, key=key, workdir=workdir
    )
    assert result.fingerprint == backup.fingerprint
    assert os.listdir(workdir) == []  # the decrypted copy is gone
    assert restore_databases(scratch) == []


def test_an_encrypted_dump_needs_its_key_and_all_its_chunks(
    encrypted_backup, small_backup, key_file: Path, scratch: PostgresCluster, tmp_path: Path
) -> None:
    backup, key, workdir = encrypted_backup, load_key(key_file), tmp_path / "work"
    with pytest.raises(BackupError, match=rf"is encrypted \(key id {backup.key_id}\): restore it with its key"):
        restore_and_verify(backup.path, backup.fingerprint, scratch)
    with pytest.raises(CryptoError, match=rf"encrypted with another key \(key id {backup.key_id}, this key is"):
        restore_and_verify(backup.path, backup.fingerprint, scratch, key=bytes(32), workdir=workdir)
    with pytest.raises(BackupError, match="is not encrypted, but a key was given"):
        restore_and_verify(small_backup.path, small_backup.fingerprint, scratch, key=bytes(32), workdir=workdir)

    data = backup.path.read_bytes()
    truncated = tmp_path / "truncated.enc"
    truncated.write_bytes(data[: len(data) - 100])
    with pytest.raises(CryptoError, match="is truncated: no final chunk"):
        restore_and_verify(truncated, backup.fingerprint, scratch, key=key, workdir=workdir)
    flipped = tmp_path / "flipped.enc"
    flipped.write_bytes(data[:200] + bytes([data[200] ^ 0x04]) + data[201:])
    with pytest.raises(CryptoError, match=r"chunk 0 fails authentication \(corrupted\)"):
        restore_and_verify(flipped, backup.fingerprint, scratch, key=key, workdir=workdir)
    assert os.listdir(workdir) == []  # no decrypted leftovers after any failure
    assert restore_databases(scratch) == []  # and nothing restored from a file that did not authenticate


def test_the_key_goes_nowhere_near_the_output(encrypted_backup, key_file: Path) -> None:
    key = load_key(key_file)
    needles = [key, key.hex().encode(), key.hex().upper().encode()]
    for path in encrypted_backup.path.parent.iterdir():
        content = path.read_bytes()
        assert not any(needle in content for needle in needles), path
    shown = repr(encrypted_backup).encode()
    assert not any(needle in shown for needle in needles)
    assert key_file.parent != encrypted_backup.path.parent
