"""The release ledger (shop_ops/release/ledger.py) on SQLite and on PostgreSQL, and an old SQLite file kept as it was."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from shop_ops.resources.ledger import (
    FILENAME,
    PG_ENV,
    EnvironmentLocked,
    LedgerConfigError,
    LedgerError,
    ReleaseLedger,
    dagster_postgres_url,
    open_ledger,
)
from shop_ops.services.processes import free_port
from shop_ops.settings import ROOT, load_settings
from tests.support import dagster_pg_env

DIGEST = "sha256:" + "a" * 64
OLD = "sha256:" + "0" * 64
NEW = "sha256:" + "1" * 64
FRONT = "sha256:" + "f" * 64

# The releases table as the first version wrote it (no measures column).
FIRST_SCHEMA = """
CREATE TABLE releases (
    release_id TEXT PRIMARY KEY, environment TEXT NOT NULL, kind TEXT NOT NULL DEFAULT 'deploy',
    version TEXT NOT NULL, backend_digest TEXT NOT NULL, frontend_digest TEXT NOT NULL, slot TEXT NOT NULL,
    status TEXT NOT NULL, approved_by TEXT, started_at REAL NOT NULL, finished_at REAL,
    previous_release_id TEXT, reason TEXT, steps TEXT NOT NULL DEFAULT '{}'
);
INSERT INTO releases (release_id, environment, version, backend_digest, frontend_digest, slot, status, started_at,
                      finished_at, steps)
VALUES ('staging-old', 'staging', '0.1.0', 'sha256:aaaa', 'sha256:bbbb', 'green', 'verified', 1.0, 2.0,
        '{"migrate": 1.5}');
"""


def test_a_ledger_from_the_first_version_gains_measures_and_keeps_its_rows(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILENAME) as conn:
        conn.executescript(FIRST_SCHEMA)
    ledger = ReleaseLedger(tmp_path)
    old = ledger.serving("staging")
    assert old is not None and (old.release_id, old.steps, old.measures) == ("staging-old", {"migrate": 1.5}, {})

    new = ledger.start("staging", "0.2.0", DIGEST, DIGEST, "blue", previous_release_id=old.release_id)
    ledger.finish(new, "verified", steps={"verify": 5.2}, measures={"k6_p95_ms": 12.5, "k6_error_rate": 0.0})
    ledger.mark(old.release_id, "replaced")
    assert ledger.get(new).measures == {"k6_p95_ms": 12.5, "k6_error_rate": 0.0}
    rows = ledger.history("staging")
    assert [r["status"] for r in rows] == ["replaced", "verified"]
    assert rows[1]["k6_p95_ms"] == 12.5 and rows[1]["verify_seconds"] == 5.2 and "k6_p95_ms" not in rows[0]
    ReleaseLedger(tmp_path)  # opening it again changes nothing
    assert len(ledger.history()) == 2


def test_the_ledger_records_releases_and_migrations(ledger: ReleaseLedger) -> None:
    """The same answers from SQLite and PostgreSQL: serving, rollback target, verified pairs, history."""
    first = ledger.start("staging", "1.0.0", OLD, FRONT, "blue")
    ledger.finish(first, "verified", steps={"migrate": 1.25}, measures={"k6_p95_ms": 3.5})
    second = ledger.start("staging", "1.1.0", NEW, FRONT, "green", previous_release_id=first)
    assert ledger.serving("staging").release_id == first  # deploying does not serve yet
    ledger.finish(second, "verified", steps={"verify": 5.5})
    ledger.mark(first, "replaced")
    failed = ledger.start("staging", "1.2.0", DIGEST, FRONT, "blue", previous_release_id=second)
    ledger.finish(failed, "failed", reason="never ready")

    assert ledger.serving("staging").release_id == second and ledger.serving("production") is None
    assert ledger.previous_verified("staging").release_id == first
    assert ledger.is_verified("staging", OLD, FRONT) and ledger.is_verified("staging", NEW, FRONT)
    assert not ledger.is_verified("staging", DIGEST, FRONT) and not ledger.is_verified("production", NEW, FRONT)
    entry = ledger.get(first)
    assert (entry.status, entry.steps, entry.measures) == ("replaced", {"migrate": 1.25}, {"k6_p95_ms": 3.5})
    # Timestamps keep sub-second precision (PostgreSQL's REAL would round epoch seconds to ~2 minutes).
    assert 0 < entry.finished_at - entry.started_at < 5 and entry.started_at % 1 != 0

    rows = ledger.history("staging")
    assert [(r["version"], r["status"]) for r in rows] == [("1.0.0", "replaced"), ("1.1.0", "verified"),
                                                           ("1.2.0", "failed")]  # fmt: skip
    assert rows[0]["migrate_seconds"] == 1.25 and rows[0]["k6_p95_ms"] == 3.5 and rows[1]["verify_seconds"] == 5.5
    assert rows[2]["reason"] == "never ready" and ledger.history("production") == []

    ledger.record_migration("staging", OLD, None, "0002", [("0001", "expand"), ("0002", "expand")], [])
    ledger.record_migration("staging", NEW, "0002", "0004", [("0004", "contract")], [("0005", "contract")])
    runs = ledger.migrations("staging")
    assert [(m.revision_before, m.revision_after) for m in runs] == [(None, "0002"), ("0002", "0004")]
    assert runs[1].contracting == ("0004",) and runs[1].held_back == (("0005", "contract"),)

    with pytest.raises(LedgerError, match="unknown status 'serving'"):
        ledger.finish(second, "serving")
    with pytest.raises(LedgerError, match="no release 'nope' in "):
        ledger.get("nope")


def test_run_workers_on_other_machines_share_the_postgres_ledger(postgres) -> None:
    """As ECS run tasks would: each opens the ledger from the DAGSTER_PG_* variables and sees the other's rows."""
    env = dagster_pg_env(postgres, "ledger_shared")
    settings = load_settings(ROOT / "config" / "aws.yaml")
    assert settings.ledger == "dagster_postgres"
    staging_worker, production_worker = (
        open_ledger(settings.ledger, settings.state_path, env),
        open_ledger(settings.ledger, settings.state_path, env),
    )
    release_id = staging_worker.start("staging", "2.0.0", NEW, FRONT, "ecs")
    assert not production_worker.is_verified("staging", NEW, FRONT)
    staging_worker.finish(release_id, "verified")
    assert production_worker.is_verified("staging", NEW, FRONT)  # promote_production's guard passes
    assert (
        env["DAGSTER_PG_PASSWORD"] not in production_worker.location and "schema shop_ops" in production_worker.location
    )
    tables = postgres.psql(
        "SELECT string_agg(table_name, ',' ORDER BY table_name) FROM information_schema.tables"
        " WHERE table_schema = 'shop_ops'",
        database=env["DAGSTER_PG_DB"],
    )
    assert tables == "migrations,releases,rotations,secret_access"  # beside Dagster's own tables, not among them


def test_the_postgres_ledger_needs_the_storage_variables_and_says_which() -> None:
    settings = load_settings(ROOT / "config" / "aws.yaml")
    with pytest.raises(LedgerConfigError, match=r"DAGSTER_PG_HOST, DAGSTER_PG_PORT, .* are not set") as err:
        open_ledger(settings.ledger, settings.state_path, {})
    assert "set `ledger: state_dir`" in str(err.value)
    env = dict(zip(PG_ENV, ("127.0.0.1", "5432", "shop", "s3cret-pw", "dagster"), strict=True))
    with pytest.raises(LedgerConfigError, match="DAGSTER_PG_PORT='x' is not a port"):
        open_ledger(settings.ledger, settings.state_path, {**env, "DAGSTER_PG_PORT": "x"})
    closed = {**env, "DAGSTER_PG_PORT": str(free_port())}
    with pytest.raises(LedgerError, match=r"release ledger postgresql.*127\.0\.0\.1.* is not usable") as down:
        open_ledger(settings.ledger, settings.state_path, closed)
    assert "s3cret-pw" not in str(down.value)


def test_one_deploy_per_environment_and_the_lock_dies_with_its_holder(ledger: ReleaseLedger) -> None:
    """The environment lock across ledger handles (run workers); a killed holder does not leave it taken."""
    other = ReleaseLedger(ledger.source)
    with ledger.environment_lock("staging"):
        with pytest.raises(EnvironmentLocked, match="another deploy, promote or rollback of staging is running"):
            with other.environment_lock("staging"):
                pass
        with other.environment_lock("production"):  # another environment is free
            pass
    with other.environment_lock("staging"):  # released when the block ended
        pass

    source = ledger.source
    where = str(source) if isinstance(source, Path) else source.render_as_string(hide_password=False)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_AND_WAIT, where], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        with pytest.raises(EnvironmentLocked):
            with ledger.environment_lock("staging"):
                pass
    finally:
        holder.kill()
        holder.wait()
    deadline = time.monotonic() + 10  # PostgreSQL notices the closed session at once; give it a moment
    while True:
        try:
            with ledger.environment_lock("staging"):
                break
        except EnvironmentLocked:
            if time.monotonic() > deadline:
                raise


HOLD_AND_WAIT = """
import sys, time
from pathlib import Path
import sqlalchemy as sa
from shop_ops.resources.ledger import ReleaseLedger
where = sys.argv[1]
ledger = ReleaseLedger(sa.make_url(where) if where.startswith("postgresql") else Path(where))
with ledger.environment_lock("staging"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_run_tasks_starting_at_once_create_the_postgres_tables_once(postgres) -> None:
    """Several workers open a fresh PostgreSQL ledger at the same moment: none fails on the tables' creation."""
    url = dagster_postgres_url(dagster_pg_env(postgres, "ledger_race"))
    start = threading.Barrier(6)

    def open_ledger() -> ReleaseLedger:
        start.wait()
        return ReleaseLedger(url)

    with ThreadPoolExecutor(6) as pool:
        ledgers = list(pool.map(lambda _: open_ledger(), range(6)))
    release_id = ledgers[0].start("staging", "3.0.0", NEW, FRONT, "ecs")
    assert all(ledger.get(release_id).version == "3.0.0" for ledger in ledgers)
