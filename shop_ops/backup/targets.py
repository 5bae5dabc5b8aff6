"""Backups as one Dagster resource, `backup_target`: what a nightly backup, a restore test and a DR drill do.

`LocalBackupTarget` (local profile): each environment's cluster archives its WAL into a
pgBackRest repository (encrypted, posix, beside the cluster's folders); a nightly backup takes a
base backup and an encrypted `pg_dump` with the fingerprint of the same snapshot, stores the dump
through `backup_store` (catalogued only when complete) and applies retention. The restore test
restores the dump into a scratch cluster, compares fingerprints and starts the backend image
that served when the backup was taken against it. The drill recovers to a point in time from
pgBackRest's repository and proves it on the heartbeat and orders tables.

Every method returns a report whose `metadata()` holds numbers and paths only (no secret).
"""

from __future__ import annotations

import random
import shutil
import tempfile
import time
import uuid
from abc import abstractmethod
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import dagster as dg
import httpx
import psycopg2
from pydantic import Field

from shop_ops.backup import crypto
from shop_ops.backup.carts import CartsFingerprint, snapshot_carts, verify_restored
from shop_ops.backup.fingerprint import Fingerprint, pin_settings
from shop_ops.backup.heartbeat import SCHEMA as HEARTBEAT_SCHEMA
from shop_ops.backup.heartbeat import TABLE as HEARTBEAT_TABLE
from shop_ops.backup.logical import BackupError, dump_with_fingerprint, restore_and_verify
from shop_ops.backup.physical import WAL_SEGMENT_BYTES, ArchiveContinuity, PgBackRest, PhysicalRestore
from shop_ops.backup.pipeline_state import check_state_snapshot, snapshot_state
from shop_ops.resources.backup_store import BackupStore, BackupStoreResource, CatalogEntry, StoreError
from shop_ops.resources.containers import ContainerError, ContainersResource, Hardening
from shop_ops.resources.postgres import PostgresResource
from shop_ops.services.processes import PostgresCluster, RedisServer, ServiceError, free_port, hand_to_pg_user

Log = Callable[[str], None]
DUMP, FINGERPRINT, STATE = "dump", "fingerprint", "state"
CARTS = "carts"  # the cart store's RDB snapshot, encrypted, beside the dump (issue 13)
PIPELINE = "pipeline"  # the catalog's "environment" for the pipeline's own state
FULL_EVERY = timedelta(days=7)  # a diff backup on other nights builds on the newest full one
DRILL_WINDOW = timedelta(hours=24)
LABEL_ROLE = "io.shop-ops.role"
COMMIT_MARGIN = 64 * 1024  # bytes of WAL a heartbeat's insert and commit records may span past its recorded lsn


def _now() -> datetime:
    return datetime.now(UTC)


class Report(Protocol):
    def metadata(self) -> dict[str, Any]:
        """Numbers and paths for the materialization (never a secret)."""
        ...


@dataclass(frozen=True)
class BackupReport:
    """One environment's nightly backup: the physical base backup, the stored dump, what retention removed."""

    environment: str
    day: date
    entry: CatalogEntry
    physical: dict[str, Any]
    seconds: float
    pruned: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        dump = self.entry.objects[DUMP]
        meta = self.entry.metadata
        return {
            "location": dump.location,
            "copy_location": dump.copy_location or "-",
            "dump_bytes": dump.bytes,
            "dump_mb": round(dump.bytes / 1e6, 3),
            "sha256": dump.sha256,
            "seconds": round(self.seconds, 2),
            "dump_seconds": meta["dump_seconds"],
            "dump_mb_per_s": meta["dump_mb_per_s"],
            "compression_ratio": meta["compression_ratio"],
            "database_bytes": meta["database_bytes"],
            "tables": len(meta["fingerprint_rows"]),
            "rows": sum(meta["fingerprint_rows"].values()),
            "release": meta["release"],
            "backend_image": meta["backend_image"] or "-",
            "key_id": meta["key_id"],
            **{f"physical_{k}": v for k, v in self.physical.items()},
            **_carts_metadata(self.entry),
            "pruned": ", ".join(self.pruned) or "none",
        }


@dataclass(frozen=True)
class RestoreReport:
    """A backup restored into a scratch cluster, its fingerprints equal, the shop serving it; RTO measured."""

    environment: str
    day: date
    rto_seconds: float
    restore_seconds: float
    restored_bytes: int
    tables: int
    rows: int
    backend_image: str | None
    catalog_products: int | None
    location: str
    carts_restored: int | None = None  # carts in the restored cart store snapshot (None: the backup has none)

    def metadata(self) -> dict[str, Any]:
        return {
            "carts_restored": self.carts_restored if self.carts_restored is not None else -1,
            "rto_seconds": round(self.rto_seconds, 2),
            "restore_seconds": round(self.restore_seconds, 2),
            "restored_bytes": self.restored_bytes,
            "restored_mb": round(self.restored_bytes / 1e6, 3),
            "tables": self.tables,
            "rows": self.rows,
            "backend_image": self.backend_image or "not started (none recorded)",
            "catalog_products": self.catalog_products if self.catalog_products is not None else -1,
            "location": self.location,
        }


@dataclass(frozen=True)
class DrillReport:
    """A point-in-time recovery: where it landed, what proved it, how long it took (RTO) and what was lost (RPO)."""

    environment: str
    target_time: datetime
    recovered_to: datetime | None
    backup_label: str
    heartbeat_rows: int
    orders_checked: int
    rto_seconds: float
    rpo_seconds: float
    newest_recoverable: datetime | None

    def metadata(self) -> dict[str, Any]:
        return {
            "target_time": self.target_time.isoformat(),
            "recovered_to": self.recovered_to.isoformat() if self.recovered_to else "-",
            "backup_label": self.backup_label,
            "heartbeat_rows": self.heartbeat_rows,
            "orders_checked": self.orders_checked,
            "rto_seconds": round(self.rto_seconds, 2),
            "rpo_seconds": round(self.rpo_seconds, 2),
            "newest_recoverable_commit": self.newest_recoverable.isoformat() if self.newest_recoverable else "-",
        }


@dataclass(frozen=True)
class ArchiveReport:
    """The WAL archive: continuous since the oldest kept base backup, and its newest segment recent enough."""

    environment: str
    continuity: ArchiveContinuity | None
    max_lag_seconds: float
    problem: str | None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def describe(self) -> str:
        if self.problem:
            return self.problem
        c = self.continuity
        if c is None:
            return f"point-in-time recovery reaches within {self.max_lag_seconds:.0f}s of now"
        ago = c.last_archived_seconds_ago() or 0.0
        return f"continuous from {c.from_segment} to {c.to_segment}; newest archived {ago:.0f}s ago"

    def metadata(self) -> dict[str, Any]:
        c = self.continuity
        ago = c.last_archived_seconds_ago() if c else None
        return {
            "continuous": bool(c and c.continuous),
            "from_segment": (c.from_segment if c else None) or "-",
            "to_segment": (c.to_segment if c else None) or "-",
            "missing_segments": c.missing if c else -1,
            "last_archived_seconds_ago": round(ago, 1) if ago is not None else -1.0,
            "max_lag_seconds": self.max_lag_seconds,
        }


@dataclass(frozen=True)
class StateReport:
    """The pipeline's own state (release ledger, Dagster's SQLite storage) backed up or restore-tested."""

    day: date
    entry: CatalogEntry
    seconds: float
    databases: int
    rows: int

    def metadata(self) -> dict[str, Any]:
        state = self.entry.objects[STATE]
        return {
            "location": state.location,
            "bytes": state.bytes,
            "sha256": state.sha256,
            "seconds": round(self.seconds, 2),
            "databases": self.databases,
            "rows": self.rows,
        }


class BackupTarget(dg.ConfigurableResource):
    """Where backups go and how they are proven: `back_up`, `restore_test`, `drill`, `archive_status`."""

    backup_store: BackupStoreResource
    key_file: str = Field(description="the backup key (64 hex characters, mode 600); never stored with backups")
    retention_daily: int = 30
    retention_monthly: int = 12
    prune_dry_run: bool = Field(default=False, description="only report what retention would delete")

    def key(self) -> bytes:
        try:
            return crypto.load_key(self.key_file)
        except BackupError:
            raise
        except OSError as exc:
            raise BackupError(f"backup key file {self.key_file}: {exc.strerror}") from None

    def store(self) -> BackupStore:
        return self.backup_store.store()

    @abstractmethod
    def back_up(self, environment: str, day: date, backend_image: str | None, release: str, log: Log) -> Report:
        """Back up `environment`'s database for `day`; `backend_image` is what serves it now."""

    @abstractmethod
    def restore_test(self, environment: str, day: date, log: Log) -> Report:
        """Restore `day`'s backup of `environment` somewhere temporary and prove it; mark it verified."""

    @abstractmethod
    def drill(self, environment: str, target: datetime | None, log: Log) -> Report:
        """Recover `environment` to `target` (None: a random time of the last 24 h the archive covers) and prove it."""

    @abstractmethod
    def archive_status(self, environment: str) -> ArchiveReport:
        """Whether `environment`'s continuous archive could recover to now."""

    # ---------------------------------------------------------------- the pipeline's own state
    def back_up_state(self, day: date, databases: dict[str, Path], log: Log) -> StateReport:
        """Copy the state's SQLite databases consistently, encrypt, store and catalogue them under `pipeline`."""
        started = time.monotonic()
        key = self.key()
        with tempfile.TemporaryDirectory(prefix="shop-ops-state-") as tmp:
            snapshot = snapshot_state(databases, Path(tmp) / "state.tar")
            encrypted = Path(tmp) / "state.tar.enc"
            _encrypt_file(snapshot.path, encrypted, key)
            log(f"pipeline state: {len(databases)} SQLite databases, {snapshot.rows} rows")
            entry = self._put(
                PIPELINE, day, {STATE: encrypted}, {"databases": snapshot.databases, "key_id": crypto.key_id(key)}
            )
        return StateReport(day, entry, time.monotonic() - started, len(snapshot.databases), snapshot.rows)

    def restore_test_state(self, day: date, log: Log) -> StateReport:
        """Fetch, decrypt and check the pipeline state backup of `day` (integrity and row counts); mark it verified."""
        started = time.monotonic()
        store = self.store()
        entry = _entry(store, PIPELINE, day)
        with tempfile.TemporaryDirectory(prefix="shop-ops-state-check-") as tmp:
            fetched = _fetch(store, entry, STATE, Path(tmp) / "state.tar.enc")
            plain = Path(tmp) / "state.tar"
            crypto.decrypt_file(fetched, plain, self.key())
            found = check_state_snapshot(plain, entry.metadata["databases"])
        rows = sum(sum(t.values()) for t in found.values())
        log(f"pipeline state of {day}: {len(found)} databases intact, {rows} rows as recorded")
        entry = _mark_verified(store, entry, {"restore_seconds": round(time.monotonic() - started, 2)})
        return StateReport(day, entry, time.monotonic() - started, len(found), rows)

    def _put(self, environment: str, day: date, files: dict[str, Path], metadata: dict[str, Any]) -> CatalogEntry:
        store = self.store()
        try:
            return store.put_backup(environment, day, files, metadata)
        except StoreError as exc:
            raise BackupError(str(exc)) from None

    def _prune(self, environment: str, day: date, log: Log) -> list[str]:
        try:
            plan = self.store().prune(
                environment, self.retention_daily, self.retention_monthly, dry_run=self.prune_dry_run, today=day
            )
        except StoreError as exc:
            raise BackupError(f"pruning {environment}'s backups failed: {exc}") from None
        deleted = [d.isoformat() for d in plan.delete]
        if deleted:
            log(f"retention {'would delete' if self.prune_dry_run else 'deleted'} {environment}: {', '.join(deleted)}")
        return deleted


class LocalCluster(dg.Config):
    """One local environment's PostgreSQL cluster as pgBackRest reaches it (as PostgreSQL's OS user)."""

    datadir: str
    port: int
    socket_dir: str
    pgbackrest_dir: str = Field(description="pgBackRest's config, encrypted repository, log, lock and spool")


class LocalCartStore(dg.Config):
    """One local environment's cart store (Redis, issue 13) as the backup reaches it: as user `admin`."""

    ports: list[int] = Field(description="the cart servers (primary and replica, either order) on 127.0.0.1")
    admin_password_file: str = Field(description="the Redis user admin's password (mode 600)")

    def admin_password(self) -> str:
        try:
            return Path(self.admin_password_file).read_text().strip()
        except OSError as exc:
            raise BackupError(
                f"the cart store's admin password file {self.admin_password_file}: {exc.strerror}"
            ) from None


class LocalBackupTarget(BackupTarget):
    """Local profile: pgBackRest + encrypted pg_dump per environment, and an encrypted RDB snapshot of its
    cart store where one is configured; scratch clusters and Redis servers for tests and drills."""

    postgres: PostgresResource
    containers: ContainersResource
    clusters: dict[str, LocalCluster]
    # Environments with a cart store of their own: its RDB snapshot goes into the same catalog entry.
    cart_stores: dict[str, LocalCartStore] = Field(default_factory=dict)
    scratch_dir: str = Field(description="scratch clusters go here (PostgreSQL's OS user must reach it)")
    process_max: int = 2
    archive_timeout_seconds: int = 20
    ready_timeout_seconds: float = 60

    def pgbackrest(self, environment: str) -> PgBackRest:
        try:
            cluster = self.clusters[environment]
        except KeyError:
            raise BackupError(
                f"no database cluster configured for {environment!r} (known: {', '.join(self.clusters)})"
            ) from None
        return PgBackRest(
            stanza=environment, base=Path(cluster.pgbackrest_dir), pg_datadir=Path(cluster.datadir),
            pg_port=cluster.port, pg_socket_dir=Path(cluster.socket_dir), key_file=Path(self.key_file),
            process_max=self.process_max, retention_full=max(1, self.retention_daily // 7 + 1),
        )  # fmt: skip

    # ---------------------------------------------------------------- nightly backup
    def back_up(self, environment: str, day: date, backend_image: str | None, release: str, log: Log) -> BackupReport:
        started = time.monotonic()
        key = self.key()
        pg = self.pgbackrest(environment)
        db = self.postgres.target(environment)
        info = pg.info()
        fulls = [b for b in info.backups if b.kind == "full"]
        kind = "full" if not fulls or _now() - fulls[-1].stopped_at >= FULL_EVERY else "diff"
        log(f"{environment}: pgBackRest {kind} backup (stanza {pg.stanza})")
        physical = pg.backup(kind)
        log(
            f"{environment}: {physical.label} in {physical.seconds:.1f}s, WAL {physical.wal_start}..{physical.wal_stop}"
        )
        with self._scratch("dump-") as tmp:
            dump = dump_with_fingerprint(db, tmp / "shop.dump.enc", key=key)
            fingerprint = tmp / "fingerprint.json"
            fingerprint.write_text(dump.fingerprint.to_json())
            log(f"{environment}: pg_dump {dump.plain_bytes / 1e6:.1f} MB in {dump.seconds:.1f}s, "
                f"{len(dump.fingerprint.tables)} tables fingerprinted")  # fmt: skip
            database_bytes = _database_bytes(db)
            metadata = {
                "release": release,
                "backend_image": backend_image,
                "database_bytes": database_bytes,
                "dump_seconds": round(dump.seconds, 2),
                "dump_mb_per_s": round(dump.mb_per_s, 1),
                "compression_ratio": round(database_bytes / dump.plain_bytes, 2) if dump.plain_bytes else 0.0,
                "plain_bytes": dump.plain_bytes,
                "snapshot": dump.snapshot,
                "fingerprint_rows": {name: rows for name, (rows, _) in dump.fingerprint.tables.items()},
                "key_id": crypto.key_id(key),
                "physical_label": physical.label,
                "wal_start": physical.wal_start,
                "wal_stop": physical.wal_stop,
            }
            files = {DUMP: dump.path, FINGERPRINT: fingerprint}
            if environment in self.cart_stores:
                files[CARTS], metadata["carts"] = self._snapshot_carts(environment, tmp, key, log)
            entry = self._put(environment, day, files, metadata)
        log(f"{environment}: stored {entry.objects[DUMP].location}")
        expired = pg.expire(pg.retention_full, dry_run=self.prune_dry_run)
        pruned = self._prune(environment, day, log) + [f"pgbackrest {label}" for label in expired.expired]
        return BackupReport(
            environment, day, entry,
            physical={
                "label": physical.label, "kind": physical.kind, "seconds": round(physical.seconds, 2),
                "repo_bytes": physical.repo_bytes, "wal_start": physical.wal_start, "wal_stop": physical.wal_stop,
            },
            seconds=time.monotonic() - started, pruned=pruned,
        )  # fmt: skip

    # ---------------------------------------------------------------- restore test
    def restore_test(self, environment: str, day: date, log: Log) -> RestoreReport:
        started = time.monotonic()
        store = self.store()
        entry = _entry(store, environment, day)
        key = self.key()
        with self._scratch("restore-") as tmp:
            dump = _fetch(store, entry, DUMP, tmp / "shop.dump.enc")
            fingerprint_file = _fetch(store, entry, FINGERPRINT, tmp / "fingerprint.json")
            expected = Fingerprint.from_json(fingerprint_file.read_text())
            log(f"{environment}: restoring {entry.objects[DUMP].location} into a scratch cluster")
            with self._scratch_cluster(tmp) as scratch:
                restored = restore_and_verify(
                    dump, expected, scratch, database="shop", keep=True, key=key, workdir=tmp,
                )  # fmt: skip
                log(f"{environment}: fingerprints of {len(expected.tables)} tables equal ({expected.rows} rows) "
                    f"after {restored.seconds:.1f}s")  # fmt: skip
                image = entry.metadata.get("backend_image")
                products = None
                if image:
                    products = self._serve_restored(environment, image, scratch, tmp, log)
                    want = expected.tables.get("products", (0, ""))[0]
                    if products != want:
                        raise BackupError(
                            f"the backend on the restored database lists {products} products, the backup holds {want}"
                        )
            carts = (
                self._restore_test_carts(environment, store, entry, tmp, key, log) if CARTS in entry.objects else None
            )
        rto = time.monotonic() - started
        _mark_verified(store, entry, {"rto_seconds": round(rto, 2)})
        return RestoreReport(
            environment, day, rto, restored.seconds, restored.restored_bytes, len(expected.tables), expected.rows,
            image, products, entry.objects[DUMP].location, carts,
        )  # fmt: skip

    def _snapshot_carts(self, environment: str, tmp: Path, key: bytes, log: Log) -> tuple[Path, dict[str, Any]]:
        """The cart store's RDB, encrypted into `tmp`, and what the catalog records of it."""
        cart_store = self.cart_stores[environment]
        try:
            snap = snapshot_carts(cart_store.ports, cart_store.admin_password(), tmp / "carts.rdb", tmp / "carts")
        except ServiceError as exc:
            raise BackupError(f"{environment}'s cart store: {exc}") from None
        encrypted = tmp / "carts.rdb.enc"
        _encrypt_file(snap.path, encrypted, key)
        snap.path.unlink()
        log(f"{environment}: cart store RDB from its {snap.source_role} (port {snap.source_port}), "
            f"{snap.bytes / 1e6:.2f} MB in {snap.seconds:.1f}s, {snap.fingerprint.carts} carts")  # fmt: skip
        return encrypted, {
            "bytes": snap.bytes, "seconds": round(snap.seconds, 2), "source": snap.source_role,
            "fingerprint": snap.fingerprint.to_dict(),
        }  # fmt: skip

    def _restore_test_carts(
        self, environment: str, store: BackupStore, entry: CatalogEntry, tmp: Path, key: bytes, log: Log
    ) -> int:
        """Decrypt the stored RDB, load it into a scratch redis-server: the same carts as recorded."""
        started = time.monotonic()
        expected = CartsFingerprint.from_dict(entry.metadata["carts"]["fingerprint"])
        fetched = _fetch(store, entry, CARTS, tmp / "carts.rdb.enc")
        plain = tmp / "carts.rdb"
        crypto.decrypt_file(fetched, plain, key)
        found = verify_restored(plain, expected, tmp / "carts")
        log(f"{environment}: cart store restored into a scratch redis-server: {found.carts} carts, "
            f"{len(found.sample)} sampled carts equal, in {time.monotonic() - started:.1f}s")  # fmt: skip
        return found.carts

    def _serve_restored(self, environment: str, image: str, scratch: PostgresCluster, tmp: Path, log: Log) -> int:
        """Start `image` against the restored database (and a scratch Redis); /readyz, then the catalog's product count."""
        engine = self.containers.engine()
        redis = RedisServer(tmp / "redis", free_port())
        port = free_port()
        name = f"shop-ops-restore-test-{environment}-{uuid.uuid4().hex[:8]}"
        redis.start()
        try:
            env = {
                "SHOP_DATABASE_URL": f"postgresql+asyncpg://{scratch.user}@127.0.0.1:{scratch.port}/shop",
                "SHOP_REDIS_URL": redis.url(),
                "SHOP_HOST": "127.0.0.1",
                "SHOP_PORT": str(port),
                "SHOP_WORKERS": "1",
            }
            log(f"{environment}: starting {image} against the restored database")
            engine.start_service(
                name, image, env=env, labels={LABEL_ROLE: "restore-test"}, stop_timeout=5, hardening=Hardening()
            )
            try:
                engine.wait_answering([name], [f"http://127.0.0.1:{port}/readyz"], self.ready_timeout_seconds)
                page = httpx.get(f"http://127.0.0.1:{port}/api/products", params={"limit": 1}, timeout=10)
                if page.status_code != 200:
                    raise BackupError(f"the backend on the restored database answered /api/products {page.status_code}")
                total = int(page.json()["total"])
                log(f"{environment}: /readyz ok, the catalog lists {total} products")
                return total
            finally:
                engine.stop_service(name, timeout=5)
        except ContainerError as exc:
            raise BackupError(f"the backend {image} did not serve the restored database: {exc}") from None
        finally:
            redis.stop()

    # ---------------------------------------------------------------- DR drill
    def drill(self, environment: str, target: datetime | None, log: Log) -> DrillReport:
        pg = self.pgbackrest(environment)
        db = self.postgres.target(environment)
        continuity = pg.archive_continuity()
        if not continuity.continuous:
            raise BackupError(f"{environment}'s WAL archive has a gap: {continuity.problem}")
        info = pg.info()
        if info.newest is None:
            raise BackupError(f"{environment} has no base backup yet: run nightly_backup first")
        # RPO: if the database were lost now, the newest commit the archive already holds.
        disaster = _now()
        recoverable = _newest_archived_heartbeat(db.connect())
        rpo = (disaster - recoverable.committed_at).total_seconds()
        log(f"{environment}: newest commit in the archive {recoverable.committed_at.isoformat()} "
            f"(heartbeat {recoverable.id}): RPO {rpo:.1f}s")  # fmt: skip
        if target is None:
            target = _random_target(info.backups[0].stopped_at, recoverable.committed_at, log)
        started = time.monotonic()
        log(f"{environment}: recovering to {target.isoformat()}")
        expected = _committed_until(db.connect(), target)
        with self._scratch("drill-") as tmp:
            restored = pg.restore(tmp / "data", target_time=target, target_action="pause")
            try:
                heartbeat, orders = _prove_recovery_point(restored, expected, target)
                rto = time.monotonic() - started
                log(f"{environment}: at {target.isoformat()}: {heartbeat} heartbeat rows and {orders} orders exactly "
                    f"as committed, none later; RTO {rto:.1f}s")  # fmt: skip
                ended = pg.continue_to_end_of_archive(restored)
                if not _has_heartbeat(ended.cluster, recoverable.id):
                    raise BackupError(
                        f"heartbeat {recoverable.id}, committed at {recoverable.committed_at.isoformat()} in WAL the "
                        "archive held, is missing after replaying the whole archive"
                    )
            finally:
                restored.cluster.stop()
        return DrillReport(
            environment, target, restored.recovered_to, restored.backup_label, heartbeat, orders, rto, rpo,
            recoverable.committed_at,
        )  # fmt: skip

    def archive_status(self, environment: str) -> ArchiveReport:
        lag = max(300.0, 10.0 * self.archive_timeout_seconds)
        try:
            continuity = self.pgbackrest(environment).archive_continuity()
        except BackupError as exc:
            return ArchiveReport(environment, None, lag, f"{environment}: {exc}")
        problem = continuity.problem
        ago = continuity.last_archived_seconds_ago()
        if problem is None and ago is None:
            problem = f"{environment}: nothing archived yet"
        elif problem is None and ago is not None and ago > lag:
            problem = (
                f"{environment}: the newest WAL segment was archived {ago:.0f}s ago (more than {lag:.0f}s, with "
                f"archive_timeout {self.archive_timeout_seconds}s): archive_command is failing; see pg_stat_archiver"
            )
        return ArchiveReport(environment, continuity, lag, problem)

    # ---------------------------------------------------------------- scratch space
    @contextmanager
    def _scratch(self, prefix: str) -> Iterator[Path]:
        base = Path(self.scratch_dir)
        base.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
        folder.chmod(0o711)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    @contextmanager
    def _scratch_cluster(self, tmp: Path) -> Iterator[PostgresCluster]:
        folder = tmp / "pg"
        folder.mkdir()
        hand_to_pg_user(folder)
        cluster = PostgresCluster(datadir=folder / "data", port=free_port())
        try:
            cluster.init()
            cluster.start()
            yield cluster
        except ServiceError as exc:
            raise BackupError(f"the scratch cluster did not start: {exc}") from None
        finally:
            cluster.stop()


# -------------------------------------------------------------------- helpers
def _entry(store: BackupStore, environment: str, day: date) -> CatalogEntry:
    try:
        entry = store.entry(environment, day)
    except StoreError as exc:
        raise BackupError(str(exc)) from None
    if entry is None:
        raise BackupError(
            f"no catalogued backup of {environment} for {day} in {store.describe()}: run nightly_backup for {day} first"
        )
    return entry


def _fetch(store: BackupStore, entry: CatalogEntry, name: str, dest: Path) -> Path:
    obj = entry.objects.get(name)
    if obj is None:
        raise BackupError(f"catalog entry {entry.key} names no {name!r} object")
    try:
        return store.get(obj.key, dest, sha256=obj.sha256)
    except StoreError as exc:
        raise BackupError(f"{name} of {entry.env}'s backup of {entry.date}: {exc}") from None


def _mark_verified(store: BackupStore, entry: CatalogEntry, metadata: dict[str, Any]) -> CatalogEntry:
    try:
        return store.mark_verified(entry, metadata=metadata)
    except StoreError as exc:
        raise BackupError(f"recording the restore test of {entry.key}: {exc}") from None


def _carts_metadata(entry: CatalogEntry) -> dict[str, Any]:
    """The cart store snapshot's numbers for a backup's materialization (none when it has no snapshot)."""
    carts = entry.metadata.get("carts")
    if not carts or CARTS not in entry.objects:
        return {}
    return {
        "carts": carts["fingerprint"]["carts"],
        "carts_rdb_bytes": carts["bytes"],
        "carts_seconds": carts["seconds"],
        "carts_location": entry.objects[CARTS].location,
    }


def _encrypt_file(src: Path, dst: Path, key: bytes) -> None:
    enc = crypto.Encryptor(key)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while chunk := fin.read(crypto.CHUNK_PLAIN):
            fout.write(enc.update(chunk))
        fout.write(enc.finalize())


def _database_bytes(db: Any) -> int:
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_database_size(current_database())")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _random_target(oldest_backup_end: datetime, archived_to: datetime, log: Log) -> datetime:
    """A random time in the last 24 h that the archive covers: after the oldest base backup, before its newest commit."""
    start = max(archived_to - DRILL_WINDOW, oldest_backup_end + timedelta(seconds=2))
    end = archived_to - timedelta(seconds=0.5)
    if end <= start:
        raise BackupError(
            f"the archive covers no time after the oldest base backup ({oldest_backup_end.isoformat()}) yet: "
            "wait for WAL to be archived, or give target_time"
        )
    target = start + (end - start) * random.random()
    log(f"target drawn at random in {start.isoformat()}..{end.isoformat()}")
    return target


@dataclass(frozen=True)
class _Committed:
    """The source's rows committed at or before the target: heartbeat ids, and orders (id -> row hash) unchanged since."""

    heartbeat: frozenset[int]
    orders: dict[Any, str]


# A NULL commit time (a row from before track_commit_timestamp was on, or frozen by VACUUM) is older than any target.
_ORDERS = "SELECT id::text, md5(ROW(o.*)::text), coalesce(pg_xact_commit_timestamp(o.xmin) <= %s, true) FROM orders o"


def _committed_until(conn: Any, target: datetime) -> _Committed:
    try:
        with conn.cursor() as cur:
            pin_settings(cur)
            cur.execute(
                f"SELECT id FROM {HEARTBEAT_SCHEMA}.{HEARTBEAT_TABLE} "
                "WHERE coalesce(pg_xact_commit_timestamp(xmin) <= %s, true)",
                (target,),
            )
            heartbeat = frozenset(int(r[0]) for r in cur.fetchall())
            cur.execute("SELECT to_regclass('public.orders') IS NOT NULL")
            orders = {}
            if cur.fetchone()[0]:
                cur.execute(_ORDERS, (target,))
                orders = {r[0]: r[1] for r in cur.fetchall() if r[2]}
        conn.rollback()
    except psycopg2.Error as exc:
        raise BackupError(f"reading what the source committed up to {target.isoformat()}: {str(exc).strip()}") from None
    finally:
        conn.close()
    if not heartbeat:
        raise BackupError(
            f"no heartbeat row committed before {target.isoformat()} (is the heartbeat writer running, and "
            "track_commit_timestamp on?): the drill has nothing to prove its recovery point with"
        )
    return _Committed(heartbeat, orders)


def _connect(cluster: PostgresCluster, database: str = "shop") -> Any:
    return psycopg2.connect(
        host=cluster.admin_host, port=cluster.port, user=cluster.user, dbname=database, connect_timeout=10
    )


def _prove_recovery_point(restored: PhysicalRestore, expected: _Committed, target: datetime) -> tuple[int, int]:
    """The recovered heartbeat ids are exactly those committed by `target`; orders: none later, every earlier one equal."""
    conn = _connect(restored.cluster)
    try:
        with conn.cursor() as cur:
            pin_settings(cur)
            cur.execute(f"SELECT id FROM {HEARTBEAT_SCHEMA}.{HEARTBEAT_TABLE}")
            heartbeat = frozenset(int(r[0]) for r in cur.fetchall())
            cur.execute("SELECT to_regclass('public.orders') IS NOT NULL")
            orders: dict[Any, tuple[str, bool]] = {}
            if cur.fetchone()[0]:
                cur.execute(_ORDERS, (target,))
                orders = {r[0]: (r[1], bool(r[2])) for r in cur.fetchall()}
        conn.rollback()
    finally:
        conn.close()
    missing = sorted(expected.heartbeat - heartbeat)
    extra = sorted(heartbeat - expected.heartbeat)
    if missing or extra:
        raise BackupError(
            f"recovery to {target.isoformat()} missed {len(missing)} heartbeat rows committed before it "
            f"(first {missing[:3]}) and holds {len(extra)} committed after it (first {extra[:3]})"
        )
    later = sorted(k for k, (_, before) in orders.items() if not before)
    if later:
        raise BackupError(f"recovery to {target.isoformat()} holds orders committed after it: {later[:5]}")
    wrong = sorted(k for k, digest in expected.orders.items() if orders.get(k, ("",))[0] != digest)
    if wrong:
        raise BackupError(f"recovery to {target.isoformat()} lost or changed orders committed before it: {wrong[:5]}")
    return len(heartbeat), len(expected.orders)


@dataclass(frozen=True)
class _Recoverable:
    id: int
    committed_at: datetime


def _segment_end(segment: str) -> str:
    """The WAL position just past `segment` (16 MB segments), as a pg_lsn literal."""
    end = int(segment[8:16], 16) * (1 << 32) + (int(segment[16:24], 16) + 1) * WAL_SEGMENT_BYTES
    return f"{end >> 32:X}/{end & 0xFFFFFFFF:X}"


def _newest_archived_heartbeat(conn: Any) -> _Recoverable:
    """The newest heartbeat row whose WAL lies in a segment already archived (with a margin for its commit record)."""
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT last_archived_wal FROM pg_stat_archiver")
            segment = cur.fetchone()[0]
            if not segment or len(segment) != 24:
                raise BackupError(
                    "the source has archived no WAL segment yet (pg_stat_archiver): check archive_command"
                )
            cur.execute(
                f"SELECT id, pg_xact_commit_timestamp(xmin) FROM {HEARTBEAT_SCHEMA}.{HEARTBEAT_TABLE} "
                "WHERE lsn IS NOT NULL AND lsn + %s < %s::pg_lsn ORDER BY id DESC LIMIT 1",
                (COMMIT_MARGIN, _segment_end(segment)),
            )
            row = cur.fetchone()
        conn.rollback()
    except psycopg2.Error as exc:
        raise BackupError(f"reading the source's archive position and heartbeat: {str(exc).strip()}") from None
    finally:
        conn.close()
    if row is None or row[1] is None:
        raise BackupError(
            f"no heartbeat row (with its commit time) in the archived WAL up to {segment}: is the heartbeat writer "
            "running and track_commit_timestamp on?"
        )
    return _Recoverable(int(row[0]), row[1].astimezone(UTC))


def _has_heartbeat(cluster: PostgresCluster, row_id: int) -> bool:
    conn = _connect(cluster)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT 1 FROM {HEARTBEAT_SCHEMA}.{HEARTBEAT_TABLE} WHERE id = %s", (row_id,))
            found = cur.fetchone() is not None
        conn.rollback()
    finally:
        conn.close()
    return found
