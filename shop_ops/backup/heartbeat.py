"""A heartbeat table that the local environment writes every few seconds, so DR drills can prove their recovery point.

One row per beat, each in its own transaction: a drill that recovers to time T must find exactly
the rows whose transactions committed at or before T (`pg_xact_commit_timestamp`, with
`track_commit_timestamp` on) and none after. Each row also records the WAL position it was
written at (`lsn`), so a drill can tell which rows were already in the archive at a given
moment: the newest of them is the newest recoverable commit (the RPO). The table lives in schema `ops`, outside the
shop's `public` schema: migrations and fingerprints never see it. Rows older than
`KEEP` are deleted as the writer goes, so the table stays small.

Run as a process: `python -m shop_ops.backup.heartbeat --port P --database D --user U
--password-file F --interval S` (the local environment starts one per environment).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import timedelta
from types import FrameType
from typing import Any

import psycopg2

from shop_ops.resources.postgres import DatabaseError, DatabaseTarget

SCHEMA = "ops"
TABLE = "heartbeat"
KEEP = timedelta(days=8)
PRUNE_EVERY = 600  # beats between deletions of old rows

CREATE = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.{TABLE} (
    id bigserial PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT clock_timestamp()
);
ALTER TABLE {SCHEMA}.{TABLE} ADD COLUMN IF NOT EXISTS lsn pg_lsn DEFAULT pg_current_wal_insert_lsn()
"""


def ensure_table(conn: Any) -> None:
    """Create `ops.heartbeat` if it is not there (the connection's role owns what it creates)."""
    with conn.cursor() as cur:
        cur.execute(CREATE)
    conn.commit()


def beat(conn: Any) -> int:
    """Insert one row in its own transaction; its id."""
    with conn.cursor() as cur:
        cur.execute(f"INSERT INTO {SCHEMA}.{TABLE} DEFAULT VALUES RETURNING id")
        row_id = int(cur.fetchone()[0])
    conn.commit()
    return row_id


def prune(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(f"DELETE FROM {SCHEMA}.{TABLE} WHERE at < now() - %s", (KEEP,))
    conn.commit()


def run(db: DatabaseTarget, interval: float) -> None:
    """Beat every `interval` seconds until SIGTERM; reconnects (every 5 s) while the database is down."""
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    conn = None
    beats = 0
    while not stopping:
        try:
            if conn is None:
                conn = db.connect()
                ensure_table(conn)
            beat(conn)
            beats += 1
            if beats % PRUNE_EVERY == 1:
                prune(conn)
        except (DatabaseError, psycopg2.Error) as exc:
            print(f"heartbeat: {db.describe()}: {str(exc).strip()} (retrying in 5 s)", file=sys.stderr, flush=True)
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(5)
            continue
        time.sleep(interval)
    if conn is not None:
        conn.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--database", default="shop")
    parser.add_argument("--user", default="shop")
    parser.add_argument("--password-file")
    parser.add_argument("--interval", type=float, default=2.0)
    args = parser.parse_args(argv)
    db = DatabaseTarget(port=args.port, database=args.database, user=args.user, password_file=args.password_file)
    run(db, args.interval)


if __name__ == "__main__":
    main()
