"""Query insight: the PostgreSQL settings for pg_stat_statements and the slow-query log, and the top statements by total time.

Every environment's cluster preloads pg_stat_statements (`pg_stat_statements.track = top`: the
statements clients send, not those run inside functions) and logs each statement slower than
`DataSettings.slow_query_ms` (`log_min_duration_statement`). The log line keeps PostgreSQL's own
prefix (`%m [%p] `), which the central log collector parses (shop_ops/observability/logs.py
stores such a line as a `slow_query` record with its duration).

What must never be kept: bind parameters of a slow statement (customers' data:
`log_parameter_max_length = 0`) and utility commands in pg_stat_statements
(`track_utility = off`: PostgreSQL 15 keeps their text as sent, `ALTER ROLE ... PASSWORD '...'`
included). Passwords are set with `PostgresCluster.set_role_password`, which sends a verifier
and turns statement logging off for its session.

`top_statements` reads the view as the environment's own role (`shop`): without
`pg_read_all_stats` PostgreSQL hides other roles' statement texts; their time still counts in
the total (`hidden_ms`). On RDS the parameter group preloads the library
(infra/terraform/modules/database) and the master user creates the extension once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd
import psycopg2
import psycopg2.errors

from shop_ops.services.processes import PostgresCluster, conf_string

EXTENSION = "pg_stat_statements"
COLUMNS = ["environment", "queryid", "query", "calls", "total_ms", "mean_ms", "rows", "share"]
HIDDEN = "<insufficient privilege>"  # what pg_stat_statements shows for another role's statement
FIX = (
    f"run `CREATE EXTENSION {EXTENSION}` in the database as the superuser (`shop-ops local up` does it for the "
    f"local clusters; on RDS the master user, once the parameter group preloads {EXTENSION})"
)


class QueryInsightError(RuntimeError):
    """pg_stat_statements cannot be read; the message names the database and the fix."""


def postgres_settings(slow_query_ms: int, preloaded: str = "") -> dict[str, str]:
    """The settings (plain values, for `PostgresCluster.apply_settings`) that turn query insight on.

    `preloaded`: the cluster's current shared_preload_libraries, kept beside pg_stat_statements.
    """
    if slow_query_ms < 0:
        raise QueryInsightError(f"slow_query_ms={slow_query_ms}: use 0 (log every statement) or more milliseconds")
    libraries = [name.strip() for name in preloaded.split(",") if name.strip()]
    if EXTENSION not in libraries:
        libraries.append(EXTENSION)
    return {
        "shared_preload_libraries": ",".join(libraries),
        "pg_stat_statements.track": "top",
        "pg_stat_statements.track_utility": "off",
        "log_min_duration_statement": str(slow_query_ms),
        "log_parameter_max_length": "0",
        # The central log collector reads time, pid and level from this prefix (PostgreSQL's default).
        "log_line_prefix": "%m [%p] ",
    }


def postgres_conf(slow_query_ms: int) -> dict[str, str]:
    """The same settings as postgresql.conf literals, for `PostgresCluster.extra_conf` (applied by `init`)."""
    return {name: conf_string(value) for name, value in postgres_settings(slow_query_ms).items()}


def enable(cluster: PostgresCluster, database: str, slow_query_ms: int, timeout: float = 30) -> bool:
    """Query insight on a running cluster: its settings (a restart only when the library was not preloaded yet)
    and the extension in `database`; True if the cluster restarted."""
    settings = postgres_settings(slow_query_ms, cluster.psql("SHOW shared_preload_libraries"))
    # ALTER SYSTEM knows pg_stat_statements' own settings only once the library is loaded: preload it first.
    libraries = {"shared_preload_libraries": settings["shared_preload_libraries"]}
    restarted = cluster.apply_settings(libraries, timeout=timeout)
    restarted = cluster.apply_settings(settings, timeout=timeout) or restarted
    cluster.create_extension(EXTENSION, database)
    return restarted


@dataclass(frozen=True)
class TopStatements:
    """The statements of one database ranked by total execution time since `since` (the statistics' last reset)."""

    environment: str
    frame: pd.DataFrame  # COLUMNS, the `limit` statements with the most total time, most first
    statements: int  # statements the view holds for this database (all roles)
    calls: int
    total_ms: float  # all of them, other roles' hidden ones included
    hidden_ms: float  # other roles' statements, whose text this role may not read
    since: datetime | None

    def metadata(self) -> dict[str, Any]:
        """Numbers for the UI's plots, the top statement, and the table as markdown."""
        top = self.frame.iloc[0] if not self.frame.empty else None
        return {
            "statements": self.statements,
            "calls": self.calls,
            "total_ms": round(self.total_ms, 3),
            "hidden_ms": round(self.hidden_ms, 3),
            "since": self.since.isoformat() if self.since else "unknown",
            "top_query": str(top["query"])[:500] if top is not None else "none",
            "top_total_ms": float(top["total_ms"]) if top is not None else 0.0,
            "top_share": float(top["share"]) if top is not None else 0.0,
            "top_statements": markdown(self.frame),
        }


_READ = f"""
SELECT queryid, query, sum(calls)::bigint, sum(total_exec_time)::float8, sum(rows)::bigint
FROM {EXTENSION}
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) AND toplevel
GROUP BY queryid, query
"""


def top_statements(conn: Any, environment: str, limit: int) -> TopStatements:
    """The `limit` statements of the connection's database with the most total execution time.

    `conn`: a psycopg2 connection to the environment's database (closed by the caller).
    QueryInsightError naming the fix when the extension is missing or its library not preloaded.
    """
    if limit < 1:
        raise QueryInsightError(f"limit={limit}: ask for at least one statement")
    database = conn.get_dsn_parameters().get("dbname", "?")
    try:
        with conn.cursor() as cur:
            cur.execute(_READ)
            rows = cur.fetchall()
            cur.execute(f"SELECT stats_reset FROM {EXTENSION}_info")
            reset = cur.fetchone()
    except psycopg2.errors.UndefinedTable:
        conn.rollback()
        raise QueryInsightError(f"{EXTENSION} is not installed in database {database} ({environment}): {FIX}") from None
    except psycopg2.errors.ObjectNotInPrerequisiteState:
        conn.rollback()
        raise QueryInsightError(
            f"{EXTENSION} is installed in database {database} ({environment}) but not loaded: add it to "
            "shared_preload_libraries and restart (`shop-ops local up` does it locally; on RDS the parameter group "
            "of infra/terraform/modules/database, then a reboot)"
        ) from None
    visible = [row for row in rows if row[0] is not None and row[1] != HIDDEN]
    hidden = [row for row in rows if row[0] is None or row[1] == HIDDEN]
    total_ms = float(sum(row[3] for row in rows))
    frame = pd.DataFrame(
        [
            {
                "environment": environment,
                "queryid": int(queryid),
                "query": query,
                "calls": int(calls),
                "total_ms": round(total, 3),
                "mean_ms": round(total / calls, 3) if calls else 0.0,
                "rows": int(nrows),
                "share": round(total / total_ms, 4) if total_ms else 0.0,
            }
            for queryid, query, calls, total, nrows in visible
        ],
        columns=COLUMNS,
    )
    frame = frame.sort_values(["total_ms", "calls"], ascending=False, kind="stable").head(limit)
    return TopStatements(
        environment=environment,
        frame=frame.reset_index(drop=True),
        statements=len(rows),
        calls=int(sum(row[2] for row in rows)),
        total_ms=total_ms,
        hidden_ms=float(sum(row[3] for row in hidden)),
        since=reset[0] if reset else None,
    )


def markdown(frame: pd.DataFrame, width: int = 80) -> str:
    """The table as markdown, each query on one line and cut to `width` characters."""
    if frame.empty:
        return "no statements recorded yet"
    shown = frame.drop(columns=["environment"]).copy()
    shown["query"] = [_one_line(text, width) for text in shown["query"]]
    return shown.to_markdown(index=False, floatfmt=".4g")


def _one_line(text: str, width: int) -> str:
    line = " ".join(str(text).split()).replace("|", "\\|")
    return line if len(line) <= width else line[: width - 1] + "…"
