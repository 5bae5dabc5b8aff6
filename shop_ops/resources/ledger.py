"""The release ledger: every deploy, rollback, schema migration and database login rotation, and every secret access.

A `releases` row is one attempt to put a release on an environment: `deploying` until it ends as
`verified` (serving), `failed` (never got traffic), `rolled_back` (got traffic, failed verification
or was rolled back later) or `replaced` (a newer release took over after verifying). A `migrations`
row is one run of shop-migrate against an environment's database: which image, the revisions
before and after, what it applied (with phases) and what it held back. A `secret_access` row is one read
or write through the `secrets` resource: the secret's name (never its value), backend, time and run.
A release attempt records the Dagster run that made it (`run_id`), so the audit trail
(shop_ops/security/audit.py) joins runs, approvals and secret reads.

Where it lives (`ledger` in the settings; `LedgerResource`, `open_ledger`):
- `state_dir` (local profile): SQLite, `<state>/releases.sqlite`. WAL mode and a busy timeout make
  it safe for the processes of one machine (the Dagster daemon, run workers, the CLI).
- `dagster_postgres` (aws profile): the PostgreSQL database of Dagster's own storage, from the
  `DAGSTER_PG_*` variables that every run task already has, in the schema `shop_ops`. Run workers
  on other machines (ECS tasks) then share one ledger: production's guard sees staging's
  verifications, a rollback sees the release before.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import dagster as dg
import sqlalchemy as sa
from pydantic import PrivateAttr
from sqlalchemy.pool import NullPool

STATUSES = ("deploying", "verified", "rolled_back", "failed", "replaced")
FILENAME = "releases.sqlite"
PG_SCHEMA = "shop_ops"
PG_ENV = ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB")
_PG_SETUP_LOCK = 0x5E0B_0001  # pg_advisory_xact_lock key: one process at a time creates the tables
_PG_ENVIRONMENT_LOCKS = 0x5E0B  # first key of pg_try_advisory_lock(int, int); the second is crc32(environment)

# Plain SQL that SQLite and PostgreSQL both read (DOUBLE PRECISION: PostgreSQL's REAL is 4 bytes).
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS releases (
    release_id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'deploy',
    version TEXT NOT NULL,
    backend_digest TEXT NOT NULL,
    frontend_digest TEXT NOT NULL,
    slot TEXT NOT NULL,
    status TEXT NOT NULL,
    approved_by TEXT,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION,
    previous_release_id TEXT,
    reason TEXT,
    steps TEXT NOT NULL DEFAULT '{}',
    measures TEXT NOT NULL DEFAULT '{}',
    run_id TEXT
)""",
    "CREATE INDEX IF NOT EXISTS releases_env ON releases (environment, started_at)",
    """CREATE TABLE IF NOT EXISTS migrations (
    environment TEXT NOT NULL,
    at DOUBLE PRECISION NOT NULL,
    backend_digest TEXT NOT NULL,
    revision_before TEXT,
    revision_after TEXT,
    applied TEXT NOT NULL DEFAULT '[]',
    held_back TEXT NOT NULL DEFAULT '[]'
)""",
    "CREATE INDEX IF NOT EXISTS migrations_env ON migrations (environment, at)",
    # One database password rotation (shop_ops/security/rotation.py): which login role took over, never a value.
    """CREATE TABLE IF NOT EXISTS rotations (
    environment TEXT NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    finished_at DOUBLE PRECISION NOT NULL,
    from_role TEXT NOT NULL,
    to_role TEXT NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    run_id TEXT,
    steps TEXT NOT NULL DEFAULT '{}'
)""",
    "CREATE INDEX IF NOT EXISTS rotations_env ON rotations (environment, started_at)",
    # One read or write of a secret through the `secrets` resource (shop_ops/security/secrets.py): its NAME, never
    # a value; the run it happened in (none outside a run). The audit trail reads it (shop_ops/security/audit.py).
    """CREATE TABLE IF NOT EXISTS secret_access (
    at DOUBLE PRECISION NOT NULL,
    name TEXT NOT NULL,
    backend TEXT NOT NULL,
    action TEXT NOT NULL,
    run_id TEXT
)""",
    "CREATE INDEX IF NOT EXISTS secret_access_at ON secret_access (at)",
)
# Columns added to `releases` after ledgers were first written: added to an older table on first use.
_ADDED_RELEASE_COLUMNS = {"measures": "TEXT NOT NULL DEFAULT '{}'", "run_id": "TEXT"}


class LedgerError(RuntimeError):
    """A ledger record does not exist or a status is unknown."""


@dataclass(frozen=True)
class LedgerEntry:
    """One row of the ledger; `steps` maps a step name to its seconds, `measures` the verifier's numbers."""

    release_id: str
    environment: str
    kind: str
    version: str
    backend_digest: str
    frontend_digest: str
    slot: str
    status: str
    approved_by: str | None
    started_at: float
    finished_at: float | None
    previous_release_id: str | None
    reason: str | None
    steps: dict[str, float]
    measures: dict[str, float]
    run_id: str | None = None  # the Dagster run that started the attempt (none before runs were recorded)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LedgerEntry:
        values = dict(row)
        values["steps"] = json.loads(values["steps"] or "{}")
        values["measures"] = json.loads(values["measures"] or "{}")
        return cls(**values)


@dataclass(frozen=True)
class MigrationRecord:
    """One shop-migrate run: `applied` and `held_back` are (revision, phase) pairs, oldest first."""

    environment: str
    at: float
    backend_digest: str
    revision_before: str | None
    revision_after: str | None
    applied: tuple[tuple[str, str], ...]
    held_back: tuple[tuple[str, str], ...]

    @property
    def contracting(self) -> tuple[str, ...]:
        """The contracting revisions it applied."""
        return tuple(rev for rev, phase in self.applied if phase == "contract")

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MigrationRecord:
        values = dict(row)
        values.pop("contracting", None)  # older ledgers stored this; it is derived from `applied`
        for key in ("applied", "held_back"):
            values[key] = tuple(tuple(pair) for pair in json.loads(values[key] or "[]"))
        return cls(**values)


class LedgerConfigError(LedgerError):
    """The settings name a ledger that cannot be opened (e.g. a DAGSTER_PG_* variable is not set)."""


class EnvironmentLocked(LedgerError):
    """Another process holds the environment's deploy lock in this ledger."""


class ReleaseLedger:
    """The ledger in a state folder (SQLite, a `Path`) or a PostgreSQL database (a SQLAlchemy `URL`).

    Tables are created on first use; each call is one short transaction. `run_id`: the Dagster run this
    handle works for, recorded with each release attempt it starts (the audit trail joins on it).
    """

    def __init__(self, location: Path | sa.URL, timeout: float = 30, run_id: str | None = None) -> None:
        self.source = location  # ReleaseLedger(ledger.source) opens the same ledger again
        self.timeout = timeout
        self.run_id = run_id
        if isinstance(location, sa.URL):
            if location.get_backend_name() != "postgresql":
                raise LedgerError(f"a ledger URL must be PostgreSQL, not {location.get_backend_name()}")
            self.location = f"{location.render_as_string(hide_password=True)} (schema {PG_SCHEMA})"
            self._engine = sa.create_engine(
                location,
                poolclass=NullPool,
                connect_args={"connect_timeout": int(timeout), "options": f"-c search_path={PG_SCHEMA}"},
            )
        else:
            path = Path(location) / FILENAME
            path.parent.mkdir(parents=True, exist_ok=True)
            self.location = str(path)
            self._engine = sa.create_engine(f"sqlite:///{path}", poolclass=NullPool, connect_args={"timeout": timeout})
        self._create_tables()

    def _create_tables(self) -> None:
        with self._connect() as conn:
            if self._engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_SETUP_LOCK})
                conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {PG_SCHEMA}"))
            else:
                conn.exec_driver_sql("PRAGMA journal_mode=WAL")
            for statement in _SCHEMA:
                conn.exec_driver_sql(statement)
            # A ledger from before measures (SQLite) or run ids were kept gains the columns.
            columns = {column["name"] for column in sa.inspect(conn).get_columns("releases")}
            for name, kind in _ADDED_RELEASE_COLUMNS.items():
                if name not in columns:
                    conn.exec_driver_sql(f"ALTER TABLE releases ADD COLUMN {name} {kind}")

    @contextmanager
    def _connect(self, autocommit: bool = False) -> Iterator[sa.Connection]:
        """One transaction, committed when the block ends without an error (or autocommit: none)."""
        try:
            if autocommit:
                with self._engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    yield conn
            else:
                with self._engine.begin() as conn:
                    yield conn
        except sa.exc.OperationalError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise LedgerError(f"release ledger {self.location} is not usable: {reason}") from None

    @contextmanager
    def environment_lock(self, environment: str) -> Iterator[None]:
        """Hold `environment`'s deploy lock for the block, or raise EnvironmentLocked at once.

        PostgreSQL: a session advisory lock in the ledger's database, so it holds across run
        workers on different machines. SQLite: an exclusive flock on `deploy-<environment>.lock`
        beside the file (one machine, as the SQLite ledger itself). Either is released when the
        block ends or the holding process dies.
        """
        if self._engine.dialect.name == "postgresql":
            key = zlib.crc32(environment.encode()) - 2**31  # int4
            with self._connect(autocommit=True) as conn:
                taken = conn.execute(
                    sa.text("SELECT pg_try_advisory_lock(:space, :key)"), {"space": _PG_ENVIRONMENT_LOCKS, "key": key}
                ).scalar()
                if not taken:
                    raise EnvironmentLocked(self._held(environment, f"advisory lock ({_PG_ENVIRONMENT_LOCKS}, {key})"))
                try:
                    yield
                finally:
                    conn.execute(
                        sa.text("SELECT pg_advisory_unlock(:space, :key)"), {"space": _PG_ENVIRONMENT_LOCKS, "key": key}
                    )
            return
        lock_path = Path(self.location).with_name(f"deploy-{environment}.lock")
        with open(lock_path, "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise EnvironmentLocked(self._held(environment, f"the lock file {lock_path}")) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _held(self, environment: str, what: str) -> str:
        return (
            f"another deploy, promote or rollback of {environment} is running (it holds {what} in the release "
            f"ledger {self.location}); wait for it to finish"
        )

    # ------------------------------------------------------------------ writes
    def start(
        self,
        environment: str,
        version: str,
        backend_digest: str,
        frontend_digest: str,
        slot: str,
        *,
        approved_by: str | None = None,
        previous_release_id: str | None = None,
        kind: str = "deploy",
    ) -> str:
        """Record a new attempt in `deploying`; returns its release id."""
        release_id = f"{environment}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
        with self._connect() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO releases (release_id, environment, kind, version, backend_digest, frontend_digest,"
                    " slot, status, approved_by, started_at, previous_release_id, run_id) VALUES (:release_id,"
                    " :environment, :kind, :version, :backend, :frontend, :slot, 'deploying', :approved_by, :at,"
                    " :previous, :run_id)"
                ),
                {"release_id": release_id, "environment": environment, "kind": kind, "version": version,
                 "backend": backend_digest, "frontend": frontend_digest, "slot": slot, "approved_by": approved_by,
                 "at": time.time(), "previous": previous_release_id, "run_id": self.run_id},
            )  # fmt: skip
        return release_id

    def finish(
        self,
        release_id: str,
        status: str,
        *,
        reason: str | None = None,
        steps: Mapping[str, float] | None = None,
        measures: Mapping[str, float] | None = None,
    ) -> None:
        """Set the final status (and reason, step seconds and the verifier's numbers) of an attempt."""
        self._set(release_id, status, reason=reason, steps=steps, measures=measures, finished=True)

    def mark(self, release_id: str, status: str, *, reason: str | None = None) -> None:
        """Change the status of an earlier release (e.g. `replaced`, `rolled_back`), keeping its times."""
        self._set(release_id, status, reason=reason, steps=None, measures=None, finished=False)

    def _set(
        self,
        release_id: str,
        status: str,
        *,
        reason: str | None,
        steps: Mapping[str, float] | None,
        measures: Mapping[str, float] | None,
        finished: bool,
    ) -> None:
        if status not in STATUSES:
            raise LedgerError(f"unknown status {status!r}: one of {', '.join(STATUSES)}")
        with self._connect() as conn:
            updated = conn.execute(
                sa.text(
                    "UPDATE releases SET status = :status, reason = COALESCE(:reason, reason),"
                    " steps = COALESCE(:steps, steps), measures = COALESCE(:measures, measures),"
                    " finished_at = COALESCE(:finished_at, finished_at) WHERE release_id = :release_id"
                ),
                {"status": status, "reason": reason, "steps": json.dumps(dict(steps)) if steps is not None else None,
                 "measures": json.dumps(dict(measures)) if measures is not None else None,
                 "finished_at": time.time() if finished else None, "release_id": release_id},
            )  # fmt: skip
            if updated.rowcount != 1:
                raise LedgerError(f"no release {release_id!r} in {self.location}")

    def record_migration(
        self,
        environment: str,
        backend_digest: str,
        revision_before: str | None,
        revision_after: str | None,
        applied: list[tuple[str, str]],
        held_back: list[tuple[str, str]],
    ) -> MigrationRecord:
        """Record one shop-migrate run against `environment`'s database (by the backend image `backend_digest`)."""
        record = MigrationRecord(
            environment, time.time(), backend_digest, revision_before, revision_after,
            tuple(map(tuple, applied)), tuple(map(tuple, held_back)),
        )  # fmt: skip
        with self._connect() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO migrations (environment, at, backend_digest, revision_before, revision_after,"
                    " applied, held_back) VALUES (:environment, :at, :backend, :before, :after, :applied, :held_back)"
                ),
                {"environment": environment, "at": record.at, "backend": backend_digest, "before": revision_before,
                 "after": revision_after, "applied": json.dumps(applied), "held_back": json.dumps(held_back)},
            )  # fmt: skip
        return record

    def record_rotation(
        self,
        environment: str,
        from_role: str,
        to_role: str,
        status: Literal["rotated", "failed"],
        *,
        started_at: float,
        reason: str = "",
        run_id: str | None = None,
        steps: Mapping[str, float] | None = None,
    ) -> None:
        """Record one database login rotation of `environment` (roles and times only: never a password)."""
        with self._connect() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO rotations (environment, started_at, finished_at, from_role, to_role, status, reason,"
                    " run_id, steps) VALUES (:environment, :started, :finished, :from_role, :to_role, :status,"
                    " :reason, :run_id, :steps)"
                ),
                {"environment": environment, "started": started_at, "finished": time.time(), "from_role": from_role,
                 "to_role": to_role, "status": status, "reason": reason, "run_id": run_id,
                 "steps": json.dumps(dict(steps or {}))},
            )  # fmt: skip

    def record_secret_access(
        self, name: str, backend: str, action: Literal["read", "write"], at: float, run_id: str | None
    ) -> None:
        """Record one read or write of the secret `name` (its name only: never a value) by the run `run_id`."""
        with self._connect() as conn:
            conn.execute(
                sa.text(
                    "INSERT INTO secret_access (at, name, backend, action, run_id)"
                    " VALUES (:at, :name, :backend, :action, :run_id)"
                ),
                {"at": at, "name": name, "backend": backend, "action": action, "run_id": run_id},
            )

    def secret_accesses(self, since: float = 0.0) -> list[dict[str, Any]]:
        """The recorded secret reads and writes at or after `since` (epoch seconds), oldest first."""
        return [dict(row) for row in self._select("SELECT * FROM secret_access WHERE at >= :since ORDER BY at",
                                                  since=since)]  # fmt: skip

    def prune_secret_accesses(self, before: float) -> int:
        """Delete the secret access records older than `before` (epoch seconds); how many went."""
        with self._connect() as conn:
            return conn.execute(sa.text("DELETE FROM secret_access WHERE at < :before"), {"before": before}).rowcount

    def rotations(self, environment: str | None = None) -> list[dict[str, Any]]:
        """The recorded login rotations, oldest first (steps flattened to `<step>_seconds`)."""
        where = "" if environment is None else " WHERE environment = :env"
        result = []
        for row in self._select(f"SELECT * FROM rotations{where} ORDER BY started_at", env=environment):
            record = dict(row)
            steps = json.loads(record.pop("steps") or "{}")
            record.update({f"{name}_seconds": seconds for name, seconds in steps.items()})
            result.append(record)
        return result

    # ------------------------------------------------------------------ queries
    def get(self, release_id: str) -> LedgerEntry:
        rows = self._select("SELECT * FROM releases WHERE release_id = :id", id=release_id)
        if not rows:
            raise LedgerError(f"no release {release_id!r} in {self.location}")
        return LedgerEntry.from_row(rows[0])

    def serving(self, environment: str) -> LedgerEntry | None:
        """The release that serves `environment`: its latest `verified` one (None before the first)."""
        rows = self._select(
            "SELECT * FROM releases WHERE environment = :env AND status = 'verified'" + _NEWEST_FIRST + " LIMIT 1",
            env=environment,
        )
        return LedgerEntry.from_row(rows[0]) if rows else None

    def previous_verified(self, environment: str) -> LedgerEntry | None:
        """The rollback target: the latest release that verified and was then replaced, other digests than serving."""
        current = self.serving(environment)
        rows = self._select(
            "SELECT * FROM releases WHERE environment = :env AND status = 'replaced'" + _NEWEST_FIRST, env=environment
        )
        for row in rows:
            entry = LedgerEntry.from_row(row)
            if current is None or (entry.backend_digest, entry.frontend_digest) != (
                current.backend_digest,
                current.frontend_digest,
            ):
                return entry
        return None

    def is_verified(self, environment: str, backend_digest: str, frontend_digest: str) -> bool:
        """Whether this pair of digests once passed verification on `environment` (serving or replaced since)."""
        rows = self._select(
            "SELECT 1 FROM releases WHERE environment = :env AND backend_digest = :backend"
            " AND frontend_digest = :frontend AND status IN ('verified', 'replaced') LIMIT 1",
            env=environment, backend=backend_digest, frontend=frontend_digest,
        )  # fmt: skip
        return bool(rows)

    def migrations(self, environment: str) -> list[MigrationRecord]:
        """`environment`'s recorded migration runs, oldest first."""
        rows = self._select("SELECT * FROM migrations WHERE environment = :env ORDER BY at", env=environment)
        return [MigrationRecord.from_row(row) for row in rows]

    def history(self, environment: str | None = None) -> list[dict[str, Any]]:
        """Every row, oldest first, as plain dicts (steps flattened to `<step>_seconds`, measures to their names)."""
        where = "" if environment is None else " WHERE environment = :env"
        result = []
        for row in self._select(f"SELECT * FROM releases{where} ORDER BY started_at", env=environment):
            record = dict(row)
            steps = json.loads(record.pop("steps") or "{}")
            record.update({f"{name}_seconds": seconds for name, seconds in steps.items()})
            record.update(json.loads(record.pop("measures") or "{}"))
            result.append(record)
        return result

    def _select(self, query: str, **params: Any) -> list[Mapping[str, Any]]:
        with self._connect() as conn:
            return [row._mapping for row in conn.execute(sa.text(query), params)]


# Newest first: by when the attempt ended (or started, for one still open), then by start.
_NEWEST_FIRST = " ORDER BY COALESCE(finished_at, started_at) DESC, started_at DESC"


def dagster_postgres_url(environ: Mapping[str, str] = os.environ) -> sa.URL:
    """The URL of Dagster's own PostgreSQL storage, from the `DAGSTER_PG_*` variables its run workers have."""
    missing = [name for name in PG_ENV if not environ.get(name)]
    if missing:
        raise LedgerConfigError(
            f"the release ledger is set to dagster_postgres but {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set: give this process Dagster's storage variables "
            "(deploy/ecs/dagster.yaml) or set `ledger: state_dir` in the settings"
        )
    port = environ["DAGSTER_PG_PORT"]
    if not port.isdigit():
        raise LedgerConfigError(f"DAGSTER_PG_PORT={port!r} is not a port number")
    return sa.URL.create(
        "postgresql+psycopg2",  # SQLAlchemy 2.1 maps plain postgresql:// to psycopg 3, which is not installed
        username=environ["DAGSTER_PG_USER"],
        password=environ["DAGSTER_PG_PASSWORD"],
        host=environ["DAGSTER_PG_HOST"],
        port=int(port),
        database=environ["DAGSTER_PG_DB"],
    )


def open_ledger(
    location: str, state_dir: Path, environ: Mapping[str, str] = os.environ, run_id: str | None = None
) -> ReleaseLedger:
    """The ledger at `location` (the settings' `ledger`): SQLite in `state_dir`, or Dagster's PostgreSQL storage;
    release attempts started through it are recorded with `run_id`."""
    if location == "dagster_postgres":
        return ReleaseLedger(dagster_postgres_url(environ), run_id=run_id)
    if location != "state_dir":
        raise LedgerConfigError(f"ledger {location!r} is not a ledger location: use state_dir or dagster_postgres")
    return ReleaseLedger(state_dir, run_id=run_id)


class LedgerResource(dg.ConfigurableResource):
    """The release ledger: SQLite in `state_dir`, or Dagster's own PostgreSQL storage (its DAGSTER_PG_* variables).

    In a run it knows the run's id (also where it is nested in another resource, e.g. `release_target`), and
    the release attempts it starts carry it.
    """

    location: Literal["state_dir", "dagster_postgres"] = "state_dir"
    state_dir: str = ""

    _run_id: str | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._run_id = context.run.run_id if context.run else None

    def open(self) -> ReleaseLedger:
        return open_ledger(self.location, Path(self.state_dir), run_id=self._run_id)

    def sqlite_path(self) -> Path | None:
        """The SQLite file of a `state_dir` ledger (None when the ledger is in PostgreSQL)."""
        return Path(self.state_dir) / FILENAME if self.location == "state_dir" else None
