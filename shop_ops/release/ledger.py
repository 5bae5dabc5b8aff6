"""The release ledger: every deploy, rollback and schema migration per environment, in SQLite (`<state>/releases.sqlite`).

WAL mode and a busy timeout make it safe for several processes (the Dagster daemon, run workers,
the CLI). A `releases` row is one attempt to put a release on an environment: `deploying` until it
ends as `verified` (serving), `failed` (never got traffic), `rolled_back` (got traffic, failed
verification or was rolled back later) or `replaced` (a newer release took over after verifying).
A `migrations` row is one run of shop-migrate against an environment's database: which image,
the revisions before and after, what it applied (with phases) and what it held back.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STATUSES = ("deploying", "verified", "rolled_back", "failed", "replaced")
FILENAME = "releases.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS releases (
    release_id TEXT PRIMARY KEY,
    environment TEXT NOT NULL,
    kind TEXT NOT NULL DEFAULT 'deploy',
    version TEXT NOT NULL,
    backend_digest TEXT NOT NULL,
    frontend_digest TEXT NOT NULL,
    slot TEXT NOT NULL,
    status TEXT NOT NULL,
    approved_by TEXT,
    started_at REAL NOT NULL,
    finished_at REAL,
    previous_release_id TEXT,
    reason TEXT,
    steps TEXT NOT NULL DEFAULT '{}',
    measures TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS releases_env ON releases (environment, started_at);
CREATE TABLE IF NOT EXISTS migrations (
    environment TEXT NOT NULL,
    at REAL NOT NULL,
    backend_digest TEXT NOT NULL,
    revision_before TEXT,
    revision_after TEXT,
    applied TEXT NOT NULL DEFAULT '[]',
    held_back TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS migrations_env ON migrations (environment, at);
"""


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

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> LedgerEntry:
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
    def from_row(cls, row: sqlite3.Row) -> MigrationRecord:
        values = dict(row)
        values.pop("contracting", None)  # older ledgers stored this; it is derived from `applied`
        for key in ("applied", "held_back"):
            values[key] = tuple(tuple(pair) for pair in json.loads(values[key] or "[]"))
        return cls(**values)


class ReleaseLedger:
    """The ledger file in a state folder (created on first use)."""

    def __init__(self, state_dir: Path, timeout: float = 30) -> None:
        self.path = Path(state_dir) / FILENAME
        self.timeout = timeout
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)
            columns = {row["name"] for row in conn.execute("PRAGMA table_info(releases)")}
            if "measures" not in columns:  # a ledger written before measures were kept
                conn.execute("ALTER TABLE releases ADD COLUMN measures TEXT NOT NULL DEFAULT '{}'")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        try:
            yield conn
        finally:
            conn.close()

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
                "INSERT INTO releases (release_id, environment, kind, version, backend_digest, frontend_digest, slot,"
                " status, approved_by, started_at, previous_release_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (release_id, environment, kind, version, backend_digest, frontend_digest, slot, "deploying",
                 approved_by, time.time(), previous_release_id),
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
            cursor = conn.execute(
                "UPDATE releases SET status = ?, reason = COALESCE(?, reason), steps = COALESCE(?, steps),"
                " measures = COALESCE(?, measures), finished_at = CASE WHEN ? THEN ? ELSE finished_at END"
                " WHERE release_id = ?",
                (status, reason, json.dumps(dict(steps)) if steps is not None else None,
                 json.dumps(dict(measures)) if measures is not None else None, finished, time.time(), release_id),
            )  # fmt: skip
            if cursor.rowcount != 1:
                raise LedgerError(f"no release {release_id!r} in {self.path}")

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
                "INSERT INTO migrations (environment, at, backend_digest, revision_before, revision_after, applied,"
                " held_back) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (environment, record.at, backend_digest, revision_before, revision_after, json.dumps(applied),
                 json.dumps(held_back)),
            )  # fmt: skip
        return record

    # ------------------------------------------------------------------ queries
    def get(self, release_id: str) -> LedgerEntry:
        with self._connect() as conn:
            row = conn.execute("SELECT * FROM releases WHERE release_id = ?", (release_id,)).fetchone()
        if row is None:
            raise LedgerError(f"no release {release_id!r} in {self.path}")
        return LedgerEntry.from_row(row)

    def serving(self, environment: str) -> LedgerEntry | None:
        """The release that serves `environment`: its latest `verified` one (None before the first)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT * FROM releases WHERE environment = ? AND status = 'verified'"
                " ORDER BY finished_at DESC, rowid DESC LIMIT 1",
                (environment,),
            ).fetchone()
        return LedgerEntry.from_row(row) if row else None

    def previous_verified(self, environment: str) -> LedgerEntry | None:
        """The rollback target: the latest release that verified and was then replaced, other digests than serving."""
        current = self.serving(environment)
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM releases WHERE environment = ? AND status = 'replaced'"
                " ORDER BY finished_at DESC, rowid DESC",
                (environment,),
            ).fetchall()
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
        with self._connect() as conn:
            row = conn.execute(
                "SELECT 1 FROM releases WHERE environment = ? AND backend_digest = ? AND frontend_digest = ?"
                " AND status IN ('verified', 'replaced') LIMIT 1",
                (environment, backend_digest, frontend_digest),
            ).fetchone()
        return row is not None

    def migrations(self, environment: str) -> list[MigrationRecord]:
        """`environment`'s recorded migration runs, oldest first."""
        with self._connect() as conn:
            rows = conn.execute(
                "SELECT * FROM migrations WHERE environment = ? ORDER BY at, rowid", (environment,)
            ).fetchall()
        return [MigrationRecord.from_row(row) for row in rows]

    def history(self, environment: str | None = None) -> list[dict[str, Any]]:
        """Every row, oldest first, as plain dicts (steps flattened to `<step>_seconds`, measures to their names)."""
        query = "SELECT * FROM releases"
        params: tuple[str, ...] = ()
        if environment is not None:
            query, params = query + " WHERE environment = ?", (environment,)
        with self._connect() as conn:
            rows = conn.execute(query + " ORDER BY started_at, rowid", params).fetchall()
        result = []
        for row in rows:
            record = dict(row)
            steps = json.loads(record.pop("steps") or "{}")
            record.update({f"{name}_seconds": seconds for name, seconds in steps.items()})
            record.update(json.loads(record.pop("measures") or "{}"))
            result.append(record)
        return result
