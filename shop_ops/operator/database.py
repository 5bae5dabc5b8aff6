"""`shop-ops db check ENV`: an environment's database as the pipeline reaches it, and its PgBouncer's pools.

Over the pipeline's own objects (`DatabaseTarget` from the `postgres` resource, the `PgBouncer` of the
environment's shop wiring): connect as the shop's role, the server's version, the round trip of
`SELECT 1` (median and worst of a few), the Alembic revision, the connections against
`max_connections`, and PgBouncer's `SHOW POOLS` as its stats user. Read-only. A database or pooler
that does not answer is a `CommandFailed` naming it and the fix.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg2

from shop_ops.operator.dagster_api import CommandFailed
from shop_ops.resources.postgres import DatabaseError, DatabaseTarget
from shop_ops.services.pgbouncer import PgBouncer

ROUND_TRIPS = 5
START_FIX = "start it with `shop-ops local up` (it starts only what is not running)"


@dataclass
class DatabaseReport:
    """One environment's database and its pooler, as `db check` found them."""

    environment: str
    database: str  # user@host:port/name (no password)
    server_version: str
    round_trip_ms: dict[str, float]  # median, max over ROUND_TRIPS
    schema_revision: str | None
    connections: dict[str, int]  # client connections now, max_connections
    pgbouncer: dict[str, Any] | None = None  # address, pools (SHOW POOLS rows of the shop's database)
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        trips = self.round_trip_ms
        out = [
            f"{self.environment} database {self.database}: {self.server_version}",
            f"  round trip: median {trips['median']:.2f} ms, max {trips['max']:.2f} ms ({ROUND_TRIPS} x SELECT 1)",
            f"  schema revision: {self.schema_revision or 'none (never migrated)'}",
            f"  connections: {self.connections['client']} of max_connections {self.connections['max']}",
        ]
        if self.pgbouncer is not None:
            out.append(f"  pgbouncer {self.pgbouncer['address']} (SHOW POOLS):")
            for pool in self.pgbouncer["pools"]:
                out.append(
                    f"    {pool['database']}/{pool['user']} ({pool.get('pool_mode', '?')}): clients "
                    f"{pool['cl_active']} active, {pool['cl_waiting']} waiting; servers {pool['sv_active']} active, "
                    f"{pool['sv_idle']} idle, {pool['sv_used']} used; longest wait {pool['maxwait']} s"
                )
            if not self.pgbouncer["pools"]:
                out.append("    no pool yet (no client has connected since it started)")
        out += [f"  note: {note}" for note in self.notes]
        return out


def _reason(message: str) -> str:
    """The cause in a libpq error text ("Connection refused", "password authentication failed ..."), one line."""
    text = " ".join(message.split())
    for marker in (" failed: FATAL: ", " failed: ", "does not answer: "):
        if marker in text:
            text = text.split(marker, 1)[1]
    return text.split(" Is the server running")[0].strip().rstrip(".")


def _connect_failed(environment: str, what: str, message: str, password_file: str | None) -> CommandFailed:
    reason = _reason(message)
    if "password authentication failed" in reason:
        fix = f"the password in {password_file} is not the role's: `shop-ops local up` sets it from the file again"
    else:
        fix = START_FIX
    return CommandFailed(f"the {environment} {what} does not answer ({reason}): {fix}")


def check_database(
    environment: str, target: DatabaseTarget, pgbouncer: PgBouncer | None, connect_timeout: int = 5
) -> DatabaseReport:
    """Connect, time round trips, read version, revision and connections; then PgBouncer's pools (if any)."""
    try:
        conn = target.connect(connect_timeout)
    except DatabaseError as exc:
        raise _connect_failed(environment, f"database {target.describe()}", str(exc), target.password_file) from None
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            trips = []
            for _ in range(ROUND_TRIPS):
                started = time.perf_counter()
                cur.execute("SELECT 1")
                cur.fetchone()
                trips.append((time.perf_counter() - started) * 1000)
            cur.execute("SELECT version()")
            version = str(cur.fetchone()[0]).split(" on ")[0]
            cur.execute(
                "SELECT count(*) FILTER (WHERE backend_type = 'client backend'), "
                "current_setting('max_connections')::int FROM pg_stat_activity"
            )
            client, maximum = cur.fetchone()
    finally:
        conn.close()
    try:
        revision = target.current_revision(connect_timeout)
    except DatabaseError as exc:
        raise _connect_failed(environment, f"database {target.describe()}", str(exc), target.password_file) from None
    report = DatabaseReport(
        environment=environment, database=target.describe(), server_version=version,
        round_trip_ms={"median": round(statistics.median(trips), 3), "max": round(max(trips), 3)},
        schema_revision=revision, connections={"client": int(client), "max": int(maximum)},
    )  # fmt: skip
    if pgbouncer is None:
        report.notes.append(f"{environment} has no PgBouncer: the shop connects to the database directly")
    else:
        report.pgbouncer = {"address": pgbouncer.address, "pools": pool_stats(environment, pgbouncer, connect_timeout)}
    return report


def pool_stats(environment: str, pgbouncer: PgBouncer, connect_timeout: int = 5) -> list[dict[str, Any]]:
    """PgBouncer's `SHOW POOLS` rows of its pooled database, as its stats user (password from its pgpass file)."""
    try:
        conn = psycopg2.connect(
            pgbouncer.stats_dsn(), passfile=str(pgbouncer.stats_pgpass), connect_timeout=connect_timeout
        )
    except psycopg2.OperationalError as exc:
        raise _connect_failed(environment, f"PgBouncer on {pgbouncer.address}", str(exc), None) from None
    try:
        conn.autocommit = True  # the admin console takes no transaction
        with conn.cursor() as cur:
            cur.execute("SHOW POOLS")
            names = [column.name for column in cur.description]
            rows = [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
    finally:
        conn.close()
    return [row for row in rows if row.get("database") == pgbouncer.database]
