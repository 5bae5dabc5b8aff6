"""Backups of a 1 GB database: our nightly backup, restore test and PITR drill against the raw tools, in one run.

Builds its own PostgreSQL 15 source cluster under a temp folder (WAL archived into an encrypted
pgBackRest repository, archive_timeout 20 s, process_max 2, as in production; a heartbeat writer
at its 2 s default), with the shop's schema, 10,000 products and 20,000 orders in database `shop`
plus `pgbench -i -s 70` in the same database (~1.1 GB). Then, `--rounds` times (median reported):

- raw: `pg_dump -Fc` to a file; the fingerprint query alone (`compute_fingerprint`, REPEATABLE
  READ); a pgBackRest full backup (`PgBackRest.backup("full")`); `pg_restore` of the raw dump
  into a new database of a newly initialised scratch cluster (initdb and start not timed), then
  the fingerprint of the restored database; a pgBackRest restore without target
  (`PgBackRest.restore`: restore, start, replay to the end of the archive, promote);
- ours: `LocalBackupTarget.back_up` (pgBackRest backup + pg_dump streamed through AES-GCM and
  sha256 + fingerprint of the same snapshot + store + expire/prune), `restore_test` (no backend
  image recorded, so the shop's container is not started) and `drill` to a target 60 s back
  (after that round's `back_up`).

Each measured step starts after `sync` and 6 s idle (not timed). Every nightly takes a full
pgBackRest backup here (FULL_EVERY set to 0, as on the first night of a week); other nights take
a differential one. Prints the machine, the tables and a breakdown of where our seconds go.

    .venv/bin/python bench/backups.py [--rounds 3] [--scale 70]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2.extensions

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.backup import crypto, logical, targets
from shop_ops.backup.fingerprint import compute_fingerprint
from shop_ops.backup.physical import PgBackRest, new_key_file
from shop_ops.backup.targets import LocalBackupTarget, LocalCluster
from shop_ops.resources.backup_store import BackupStoreResource, FolderStore
from shop_ops.resources.containers import ContainersResource
from shop_ops.resources.postgres import DatabaseTarget, PostgresResource
from shop_ops.services.processes import PostgresCluster, free_port, hand_to_pg_user, pg_bin

ENV = "bench"
PRODUCTS = 10_000
ORDERS = 20_000
ARCHIVE_TIMEOUT = 20  # production's default (settings.backups.archive_timeout_seconds)
PROCESS_MAX = 2  # production's default (settings.backups.process_max)
SETTLE = 6.0  # seconds idle (after `sync`) before each measured step: one step's leftovers must not slow the next
DRILL_BACK = timedelta(seconds=60)  # the drill's target: this long before it starts (and after the newest backup)


def say(line: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {line}", flush=True)


def machine() -> str:
    model = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return f"{platform.node()}: nproc {len(os.sched_getaffinity(0))}, {model}, {mem_kb / 1024 / 1024:.0f} GB RAM, {platform.platform()}"


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class Stopwatch:
    """Wraps functions and methods to add up the seconds spent in each, per label, until `reset`."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._undo: list[tuple[Any, str, Any]] = []

    def wrap(self, owner: Any, name: str, label: str | Callable[..., str]) -> None:
        original = getattr(owner, name)

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return original(*args, **kwargs)
            finally:
                key = label(*args, **kwargs) if callable(label) else label
                self.seconds[key] += time.monotonic() - started

        self._undo.append((owner, name, original))
        setattr(owner, name, timed_call)

    def reset(self) -> dict[str, float]:
        taken = dict(self.seconds)
        self.seconds.clear()
        return taken

    def unwrap(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


@contextmanager
def timed(settle: float | None = SETTLE) -> Iterator[list[float]]:
    """The seconds of the block. Unless `settle` is None, first (not timed) the page cache is written back
    and the machine left alone `settle` seconds, so that one step's leftovers do not slow the next."""
    if settle is not None:
        os.sync()
        time.sleep(settle)
    box: list[float] = []
    started = time.monotonic()
    yield box
    box.append(time.monotonic() - started)


def client_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def run(cmd: list[str], what: str) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, env=client_env())
    if result.returncode != 0:
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr[-1500:]}")


def fingerprint_alone(db: DatabaseTarget) -> int:
    """The fingerprint query by itself in a REPEATABLE READ transaction; the rows it covered."""
    conn = db.connect()
    try:
        conn.set_session(isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=True)
        fp = compute_fingerprint(conn)
        conn.rollback()
    finally:
        conn.close()
    return fp.rows


def build_source(base: Path, scale: int) -> tuple[PostgresCluster, PgBackRest, subprocess.Popen[bytes]]:
    key_file = base / "secrets" / "backup.key"
    key_file.parent.mkdir(mode=0o711)
    new_key_file(key_file)
    cluster = PostgresCluster(datadir=base / "source" / "data", port=free_port())
    pg = PgBackRest.for_cluster(cluster, ENV, base / "source" / "pgbackrest", key_file, process_max=PROCESS_MAX)
    pg.start_new_cluster(cluster, archive_timeout=ARCHIVE_TIMEOUT)
    cluster.create_database("shop", owner="shop")
    url = cluster.dsn("shop", user="shop", driver="postgresql+asyncpg")
    upgrade(url)
    asyncio.run(seed_catalog(url, PRODUCTS))
    cluster.psql(
        "INSERT INTO orders (id, email, status, total_cents, idempotency_key, cart_id) "
        f"SELECT g, 'bench' || g || '@example.com', 'placed', g * 100, 'bench-' || g, 'cart-' || g "
        f"FROM generate_series(1, {ORDERS}) g;"
        "INSERT INTO order_lines (order_id, product_id, name, price_cents, quantity) "
        f"SELECT g, p.id, p.name, p.price_cents, 1 FROM generate_series(1, {ORDERS}) g "
        f"JOIN products p ON p.id = (g % {PRODUCTS}) + 1;",
        database="shop",
    )
    heartbeat = subprocess.Popen(
        [sys.executable, "-m", "shop_ops.backup.heartbeat", "--port", str(cluster.port)],
        stdout=subprocess.DEVNULL, stderr=open(base / "heartbeat.log", "wb"),
    )  # fmt: skip
    with timed(None) as took:
        run(
            [pg_bin("pgbench"), "-i", "-q", "-s", str(scale), "-h", "127.0.0.1", "-p", str(cluster.port),
             "-U", "shop", "shop"],
            "pgbench -i",
        )  # fmt: skip
    say(f"pgbench -i -s {scale}: {took[0]:.1f}s")
    cluster.psql("VACUUM ANALYZE", database="shop")
    with timed(None) as took:
        pg.check()  # a segment switch, archived: the archive has caught up with the load
    say(f"archive caught up ({took[0]:.1f}s)")
    return cluster, pg, heartbeat


def fresh_cluster(folder: Path) -> PostgresCluster:
    """A new, started cluster in `folder` (PostgreSQL's defaults as PostgresCluster sets them, as the restore test's)."""
    folder.mkdir()
    hand_to_pg_user(folder)
    cluster = PostgresCluster(datadir=folder / "data", port=free_port())
    cluster.init()
    cluster.start()
    return cluster


def make_target(base: Path, cluster: PostgresCluster, key_file: Path) -> LocalBackupTarget:
    return LocalBackupTarget(
        backup_store=BackupStoreResource(folder=str(base / "store")),
        key_file=str(key_file),
        postgres=PostgresResource(environments={ENV: DatabaseTarget(port=cluster.port)}),
        containers=ContainersResource(docker_host="unix:///nonexistent (no backend image: never used)"),
        clusters={
            ENV: LocalCluster(
                datadir=str(cluster.datadir), port=cluster.port, socket_dir=str(cluster.socket_dir),
                pgbackrest_dir=str(base / "source" / "pgbackrest"),
            )
        },
        scratch_dir=str(base / "scratch"),
        process_max=PROCESS_MAX,
        archive_timeout_seconds=ARCHIVE_TIMEOUT,
    )  # fmt: skip


def instrument(watch: Stopwatch) -> None:
    """Where the seconds of ours go (and of the raw steps that share the code)."""
    watch.wrap(PgBackRest, "_pgbackrest", lambda _self, command, *a, **k: f"pgbackrest {command}")
    watch.wrap(targets, "dump_with_fingerprint", "dump_with_fingerprint (pg_dump | AES-GCM + sha256, fingerprint)")
    watch.wrap(
        logical,
        "compute_fingerprint",
        "compute_fingerprint (back_up: concurrent with pg_dump; restore_test: after pg_restore)",
    )
    watch.wrap(FolderStore, "put", "FolderStore.put (copy into the store + sha256 + fsync)")
    watch.wrap(FolderStore, "get", "FolderStore.get (copy out of the store + sha256)")
    watch.wrap(FolderStore, "_write_small", "catalog entry writes")
    watch.wrap(targets, "_database_bytes", "pg_database_size")
    watch.wrap(logical, "sha256_of", "restore_and_verify: sha256 of the fetched dump")
    watch.wrap(crypto, "decrypt_file", "decrypt the dump (AES-GCM) into a file")
    watch.wrap(logical, "_restore_plain", "pg_restore --list + pg_restore + fingerprint + size")
    watch.wrap(PostgresCluster, "init", "scratch cluster initdb")
    watch.wrap(PostgresCluster, "start", "cluster start")
    watch.wrap(PostgresCluster, "stop", "cluster stop")


def one_round(
    n: int,
    day: date,
    base: Path,
    cluster: PostgresCluster,
    pg: PgBackRest,
    target: LocalBackupTarget,
    watch: Stopwatch,
    started: list[PostgresCluster],
) -> tuple[dict[str, float], dict[str, dict[str, float]], dict[str, Any]]:
    db = DatabaseTarget(port=cluster.port)
    seconds: dict[str, float] = {}
    parts: dict[str, dict[str, float]] = {}
    info: dict[str, Any] = {}

    def log(line: str) -> None:
        say(f"    {line}")

    dump = base / f"raw-{n}.dump"

    # The raw steps in the order ours runs them. A pgBackRest backup that followed another one copied
    # its files 0.3-0.7 s slower even 6 s later (not 15 s later): here neither backup follows a backup
    # (the raw one follows the previous round's drill, or the load; ours follows the raw fingerprint).
    watch.reset()
    with timed() as took:
        full = pg.backup("full")
    seconds["pgbackrest_backup"] = took[0]
    parts["raw pgBackRest backup"] = watch.reset()
    info["repo_bytes"] = full.repo_bytes
    say(f"  raw pgBackRest full backup: {took[0]:.1f}s ({full.label}, {full.repo_bytes / 1e6:.0f} MB in the repo)")

    with timed() as took:
        run([pg_bin("pg_dump"), "-Fc", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "shop", "-d", "shop",
             "-f", str(dump)], "pg_dump")  # fmt: skip
    seconds["pg_dump"] = took[0]
    info["raw_dump_bytes"] = dump.stat().st_size
    say(f"  raw pg_dump -Fc: {took[0]:.1f}s, {dump.stat().st_size / 1e6:.0f} MB")

    with timed() as took:
        rows = fingerprint_alone(db)
    seconds["fingerprint"] = took[0]
    say(f"  raw fingerprint alone: {took[0]:.1f}s ({rows} rows)")

    watch.reset()
    with timed() as took:
        report = target.back_up(ENV, day, None, "bench", log)
    seconds["ours_backup"] = took[0]
    parts["ours back_up"] = watch.reset()
    meta = report.metadata()
    info.update(ours_dump_bytes=meta["dump_bytes"], plain_bytes=report.entry.metadata["plain_bytes"])
    info["database_bytes"] = meta["database_bytes"]
    backed_up = datetime.now(UTC)
    say(f"  ours back_up: {took[0]:.1f}s ({meta['physical_kind']} {meta['physical_label']})")

    # Into a new cluster, as the restore test does (its initdb and start not timed here; ours counts them).
    scratch = fresh_cluster(base / f"raw-scratch-{n}")
    started.append(scratch)
    name = "shop"
    with timed() as took:
        scratch.psql(f'CREATE DATABASE "{name}"')
        run([pg_bin("pg_restore"), "--exit-on-error", "--no-owner", "--no-privileges", "-h", "127.0.0.1",
             "-p", str(scratch.port), "-U", scratch.user, "-d", name, str(dump)], "pg_restore")  # fmt: skip
    seconds["pg_restore"] = took[0]
    say(f"  raw pg_restore: {took[0]:.1f}s")
    with timed(None) as took:  # right after pg_restore, as in ours
        fingerprint_alone(DatabaseTarget(port=scratch.port, database=name, user=scratch.user))
    seconds["restored_fingerprint"] = took[0]
    say(f"  raw fingerprint of the restored database: {took[0]:.1f}s")
    scratch.stop()
    shutil.rmtree(scratch.datadir.parent)
    dump.unlink()

    folder = base / f"raw-restore-{n}"
    folder.mkdir()
    watch.reset()
    with timed() as took:
        restored = pg.restore(folder / "data")
    seconds["pgbackrest_restore"] = took[0]
    parts["raw pgBackRest restore"] = watch.reset()
    restored.cluster.stop()
    shutil.rmtree(folder)
    say(f"  raw pgBackRest restore (restore, start, replay to the end of the archive, promote): {took[0]:.1f}s")

    watch.reset()
    with timed() as took:
        restore = target.restore_test(ENV, day, log)
    seconds["ours_restore"] = took[0]
    parts["ours restore_test"] = watch.reset()
    say(f"  ours restore_test: {took[0]:.1f}s (RTO {restore.rto_seconds:.1f}s)")

    # The drill: a target DRILL_BACK before now, after this round's nightly backup had finished.
    earliest = backed_up + timedelta(seconds=5) + DRILL_BACK
    wait = (earliest - datetime.now(UTC)).total_seconds()
    if wait > 0:
        say(f"  waiting {wait:.0f}s: the drill's target must come after the nightly backup")
        time.sleep(wait)
    drill_target = datetime.now(UTC) - DRILL_BACK
    watch.reset()
    with timed(0) as took:
        drill = target.drill(ENV, drill_target, log)
    parts["ours drill"] = watch.reset()
    seconds["drill_seconds"] = took[0]
    seconds["drill_rto"] = drill.rto_seconds
    seconds["drill_rpo"] = drill.rpo_seconds
    info["drill_heartbeat_rows"] = drill.heartbeat_rows
    info["drill_orders"] = drill.orders_checked
    say(f"  ours drill: RTO {drill.rto_seconds:.1f}s, RPO {drill.rpo_seconds:.1f}s ({took[0]:.1f}s in all)")
    return seconds, parts, info


def med(values: list[float]) -> float:
    return statistics.median(values)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scale", type=int, default=70, help="pgbench scale factor (70: ~1.1 GB)")
    args = parser.parse_args()
    begun = time.monotonic()
    say(machine())
    say(f"load average {loadavg()}")
    targets.FULL_EVERY = timedelta(0)  # every nightly a full backup (the first night of a week)

    base = Path(tempfile.mkdtemp(prefix="shop-ops-bench-backups-"))
    base.chmod(0o755)  # PostgreSQL and pgBackRest run as the postgres OS user
    cluster: PostgresCluster | None = None
    started: list[PostgresCluster] = []
    heartbeat: subprocess.Popen[bytes] | None = None
    watch = Stopwatch()
    rounds: list[dict[str, float]] = []
    parts: list[dict[str, dict[str, float]]] = []
    info: dict[str, Any] = {}
    try:
        with timed(None) as took:
            cluster, pg, heartbeat = build_source(base, args.scale)
        db_bytes = int(cluster.psql("SELECT pg_database_size('shop')"))
        say(f"source built in {took[0]:.0f}s: database shop {db_bytes / 1e9:.2f} GB")
        target = make_target(base, cluster, pg.key_file)
        instrument(watch)
        today = datetime.now(UTC).date()
        for n in range(1, args.rounds + 1):
            say(f"round {n} of {args.rounds} (load average {loadavg()})")
            seconds, round_parts, info = one_round(
                n, today - timedelta(days=args.rounds - n), base, cluster, pg, target, watch, started
            )
            rounds.append(seconds)
            parts.append(round_parts)
    finally:
        watch.unwrap()
        if heartbeat is not None:
            heartbeat.terminate()
            heartbeat.wait(timeout=10)
        for c in [*started, cluster]:
            if c is not None:
                c.stop()
        shutil.rmtree(base, ignore_errors=True)
    total = time.monotonic() - begun
    report(rounds, parts, info, db_bytes, args, total)
    return 0


def report(
    rounds: list[dict[str, float]],
    parts: list[dict[str, dict[str, float]]],
    info: dict[str, Any],
    db_bytes: int,
    args: argparse.Namespace,
    total: float,
) -> None:
    def m(key: str) -> float:
        return med([r[key] for r in rounds])

    backup_raw = [r["pg_dump"] + r["pgbackrest_backup"] + r["fingerprint"] for r in rounds]
    restore_raw = [r["pg_restore"] + r["restored_fingerprint"] for r in rounds]
    backup_ratio = med([r["ours_backup"] / s for r, s in zip(rounds, backup_raw, strict=True)])
    restore_ratio = med([r["ours_restore"] / s for r, s in zip(rounds, restore_raw, strict=True)])
    n = len(rounds)
    print()
    print(f"backups of a {db_bytes / 1e9:.2f} GB database, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {machine()}")
    print(
        f"pgbench -s {args.scale} + {PRODUCTS} products + {ORDERS} orders; pg_dump -Fc {info['raw_dump_bytes'] / 1e6:.0f} MB "
        f"(ours {info['ours_dump_bytes'] / 1e6:.0f} MB encrypted); pgBackRest full {info['repo_bytes'] / 1e6:.0f} MB "
        f"in the repo (zst, aes-256-cbc), process_max {PROCESS_MAX}; archive_timeout {ARCHIVE_TIMEOUT} s; "
        f"median of {n} rounds (ours / raw: the median of the rounds' ratios); load average at the end {loadavg()}"
    )
    print()
    print("| step | raw, s | ours, s | ours / raw | goal |")
    print("| --- | ---: | ---: | ---: | --- |")
    print(f"| `pg_dump -Fc` to a file | {m('pg_dump'):.1f} | | | |")
    print(f"| pgBackRest full backup | {m('pgbackrest_backup'):.1f} | | | |")
    print(f"| fingerprint query alone | {m('fingerprint'):.1f} | | | |")
    print(
        f"| **nightly backup** (raw: the three above in sequence; ours: `back_up`) | **{med(backup_raw):.1f}** "
        f"| **{m('ours_backup'):.1f}** | **{backup_ratio:.2f}** | ≤ 1.15 |"
    )
    print(f"| `pg_restore` into a new cluster's new database | {m('pg_restore'):.1f} | | | |")
    print(f"| fingerprint of the restored database | {m('restored_fingerprint'):.1f} | | | |")
    print(
        f"| **restore test** (raw: the two above; ours: `restore_test`, no container) | **{med(restore_raw):.1f}** "
        f"| **{m('ours_restore'):.1f}** | **{restore_ratio:.2f}** | ≤ 1.3 |"
    )
    print(
        f"| pgBackRest restore, no target (restore + start + replay to the end + promote) | {m('pgbackrest_restore'):.1f} | | | |"
    )
    print(
        f"| **PITR drill RTO** (`drill`, target {DRILL_BACK.seconds} s back) | | **{m('drill_rto'):.1f}** | | < 30 s |"
    )
    print(
        f"| **PITR drill RPO** (the newest commit already archived, when the drill began) | | **{m('drill_rpo'):.1f}** | | < 60 s |"
    )
    print()
    print(
        f"drill proof (last round): {info['drill_heartbeat_rows']} heartbeat rows and {info['drill_orders']} orders "
        "exactly as committed at the target, none later"
    )
    print()
    print("every round, seconds:")
    keys = list(rounds[0])
    print("| round | " + " | ".join(keys) + " |")
    print("| ---: | " + " | ".join("---:" for _ in keys) + " |")
    for i, r in enumerate(rounds, 1):
        print(f"| {i} | " + " | ".join(f"{r[k]:.1f}" for k in keys) + " |")
    print()
    print("where the seconds go (median over rounds; nested: a line's time may include the ones below it):")
    for what in parts[0]:
        labels = list(dict.fromkeys(label for p in parts for label in p[what]))
        print(f"- {what}:")
        for label in labels:
            print(f"    {med([p[what].get(label, 0.0) for p in parts]):6.2f}  {label}")
    print()
    print(f"total run time of the bench: {total / 60:.1f} min")


if __name__ == "__main__":
    sys.exit(main())
