"""The cart store in the nightly backup: an RDB snapshot taken as `admin`, fingerprinted, and restore-tested in a scratch redis-server.

`redis-cli --rdb` asks a cart server for a full synchronisation, as a replica would, and writes
the RDB it streams (a point-in-time image: the server forks for it). It runs against the replica
when one is in sync (the primary does not fork), else the primary. The `admin` password goes to
redis-cli in REDISCLI_AUTH, never on its command line.

The fingerprint is taken from the snapshot itself (loaded into a scratch server, so it describes
exactly what was stored): how many carts (`cart:*` keys) and a digest of each of a sample of
them. The restore test loads the stored copy the same way and must find the same.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shop_ops.backup.logical import BackupError
from shop_ops.services.processes import RedisServer, ServiceError, free_port

CART_KEYS = "cart:*"
SAMPLE_SIZE = 25


@dataclass(frozen=True)
class CartsFingerprint:
    """What a snapshot holds: its number of carts and a digest of each sampled cart."""

    carts: int
    sample: dict[str, str]

    def to_dict(self) -> dict[str, object]:
        return {"carts": self.carts, "sample": dict(self.sample)}

    @classmethod
    def from_dict(cls, doc: dict[str, object]) -> CartsFingerprint:
        sample = doc.get("sample")
        carts = doc.get("carts")
        if not isinstance(sample, dict) or not isinstance(carts, int):
            raise BackupError(f"the recorded carts fingerprint is malformed: {json.dumps(doc)[:200]}")
        return cls(carts, {str(k): str(v) for k, v in sample.items()})


@dataclass(frozen=True)
class CartsSnapshot:
    """An RDB file taken from a cart server, and its fingerprint."""

    path: Path
    bytes: int
    seconds: float
    source_port: int
    source_role: str
    fingerprint: CartsFingerprint


def _client(port: int, username: str | None, password: str) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, username=username, password=password, socket_timeout=5,
        socket_connect_timeout=5, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def pick_source(ports: Sequence[int], admin_password: str) -> tuple[int, str]:
    """(port, role) of the server to snapshot: a replica in sync with its primary, else the primary."""
    primary = None
    problems = []
    for port in ports:
        try:
            with _client(port, "admin", admin_password) as client:
                info = client.info("replication")
        except redis.RedisError as exc:
            problems.append(f"127.0.0.1:{port}: {exc}")
            continue
        if info.get("role") == "slave" and info.get("master_link_status") == "up":
            return port, "replica"
        if info.get("role") == "master":
            primary = port
    if primary is None:
        raise BackupError(
            "no cart server answers as primary or in-sync replica ("
            + "; ".join(problems or ["none configured"])
            + "): start the cart store (shop-ops local up) and check the admin password file"
        )
    return primary, "primary"


def take_rdb(port: int, admin_password: str, dest: Path, timeout: float = 600) -> None:
    """`redis-cli --rdb dest` as `admin` against 127.0.0.1:`port`; BackupError with its output if it fails."""
    binary = shutil.which("redis-cli")
    if binary is None:
        raise BackupError("redis-cli not found: install Debian's redis-tools package (the runner image has it)")
    env = {**os.environ, "REDISCLI_AUTH": admin_password}
    result = subprocess.run(
        [binary, "-h", "127.0.0.1", "-p", str(port), "--user", "admin", "--no-auth-warning", "--rdb", str(dest)],
        env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    if result.returncode != 0 or not dest.is_file() or dest.stat().st_size == 0:
        output = (result.stdout + result.stderr).strip()[-800:]
        raise BackupError(f"redis-cli --rdb from the cart server on port {port} failed ({result.returncode}): {output}")


def _digest(fields: dict[bytes, bytes]) -> str:
    h = hashlib.sha256()
    for name, value in sorted(fields.items()):
        h.update(len(name).to_bytes(4, "big") + name + len(value).to_bytes(4, "big") + value)
    return h.hexdigest()


def fingerprint_rdb(rdb: Path, workdir: Path, sample_keys: Sequence[str] | None = None) -> CartsFingerprint:
    """Load `rdb` into a scratch redis-server (127.0.0.1, a random password, nothing written back) and
    fingerprint its carts: all of them counted, `sample_keys` (default: an even spread) digested."""
    folder = workdir / "scratch-redis"
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(rdb, folder / "dump.rdb")
    password = secrets.token_urlsafe(24)
    server = RedisServer(folder, free_port(), password=password, settings={"dbfilename": "dump.rdb"})
    try:
        server.start()
    except ServiceError as exc:
        raise BackupError(f"a scratch redis-server did not load the carts snapshot {rdb}: {exc}") from None
    try:
        with _client(server.port, None, password) as client:
            deadline = time.monotonic() + 120
            while True:
                try:
                    client.ping()
                    break
                except redis.BusyLoadingError:
                    if time.monotonic() > deadline:
                        raise BackupError(f"the scratch redis-server is still loading {rdb} after 120 s") from None
                    time.sleep(0.1)
            keys = sorted(k.decode() for k in client.scan_iter(match=CART_KEYS, count=1000))
            if sample_keys is None:
                step = max(1, len(keys) // SAMPLE_SIZE)
                sample_keys = keys[::step][:SAMPLE_SIZE]
            sample = {key: _digest(client.hgetall(key)) for key in sample_keys}
        return CartsFingerprint(len(keys), sample)
    finally:
        server.stop()


def snapshot_carts(ports: Sequence[int], admin_password: str, dest: Path, workdir: Path) -> CartsSnapshot:
    """Take an RDB of the cart store into `dest` (from its replica if in sync) and fingerprint it."""
    started = time.monotonic()
    port, role = pick_source(ports, admin_password)
    take_rdb(port, admin_password, dest)
    seconds = time.monotonic() - started
    fingerprint = fingerprint_rdb(dest, workdir)
    return CartsSnapshot(dest, dest.stat().st_size, seconds, port, role, fingerprint)


def verify_restored(rdb: Path, expected: CartsFingerprint, workdir: Path) -> CartsFingerprint:
    """Load a restored RDB and check it holds `expected`: the same number of carts, each sampled cart equal."""
    found = fingerprint_rdb(rdb, workdir, sample_keys=sorted(expected.sample))
    if found.carts != expected.carts:
        raise BackupError(f"the restored cart store holds {found.carts} carts, the backup recorded {expected.carts}")
    differing = [key for key, digest in expected.sample.items() if found.sample.get(key) != digest]
    if differing:
        raise BackupError(
            f"{len(differing)} of {len(expected.sample)} sampled carts differ after the restore: {', '.join(differing[:5])}"
        )
    return found
