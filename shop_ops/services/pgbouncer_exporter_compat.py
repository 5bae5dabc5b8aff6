"""Runs Debian's prometheus-pgbouncer-exporter (1.7) against PgBouncer 1.18: its collectors, told 1.18's column names.

Debian's exporter 1.7 reads `SHOW STATS` columns that PgBouncer renamed in 1.8 (`total_requests`)
and so fails on every scrape of 1.18 (KeyError at start-up). This script, run by the system
Python that the Debian package installs into (`/usr/bin/python3 THIS_FILE ARGS`; it imports no
shop_ops code), maps the collectors to 1.18's columns, adds the server-side columns of
`SHOW POOLS` and `SHOW DATABASES` the alert rules need, reconnects after PgBouncer restarts, and
then hands over to the package's own command line (`prometheus_pgbouncer_exporter.cli.main`:
same arguments, same HTTP server). The password comes from libpq's `PGPASSFILE`.

Metrics (labels): the package's own names for what it already served, plus
- pgbouncer_requests_total, _transactions_total, _query_microseconds_total,
  _transaction_microseconds_total, _wait_microseconds_total, _received_bytes_total,
  _sent_bytes_total (database)
- pgbouncer_active_clients, _waiting_clients, _pool_active_servers, _pool_idle_servers,
  _pool_used_servers, _pool_maxwait_seconds (database, user)
- pgbouncer_pool_size, _reserve_pool, _database_max_connections, _database_current_connections (database)
- pgbouncer_databases, _pools, _used_clients, _used_servers, ... (SHOW LISTS)
"""

from __future__ import annotations

from typing import Any


class _Reconnecting:
    """A psycopg2 connection to the console that is opened again when the last one broke."""

    def __init__(self, connect: Any, *args: Any) -> None:
        self._connect, self._args, self._conn = connect, args, None

    def cursor(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._conn = self._connect(*self._args)
        return _Cursor(self)

    def broken(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:  # noqa: BLE001 (closing a broken connection: it is gone either way)
                pass
        self._conn = None

    def close(self) -> None:
        self.broken()


class _Cursor:
    """A cursor that drops its connection on an error, so the next scrape reconnects."""

    def __init__(self, owner: _Reconnecting) -> None:
        self._owner = owner
        self._cursor = owner._conn.cursor()

    def __enter__(self) -> Any:
        return self._cursor

    def __exit__(self, kind: Any, *rest: Any) -> None:
        self._cursor.close()
        if kind is not None:
            self._owner.broken()


def main() -> None:
    from prometheus_pgbouncer_exporter import cli, collectors, utils

    collectors.StatsCollector.metrics = {
        "total_query_count": ("requests_total", "SQL queries pooled by PgBouncer"),
        "total_xact_count": ("transactions_total", "SQL transactions pooled by PgBouncer"),
        "total_received": ("received_bytes_total", "Network traffic received by PgBouncer"),
        "total_sent": ("sent_bytes_total", "Network traffic sent by PgBouncer"),
        "total_query_time": ("query_microseconds_total", "Microseconds connected to PostgreSQL running queries"),
        "total_xact_time": (
            "transaction_microseconds_total",
            "Microseconds a server connection was in a transaction (busy or idle in transaction)",
        ),
        "total_wait_time": ("wait_microseconds_total", "Microseconds clients waited for a server connection"),
    }
    collectors.PoolsCollector.metrics = {
        "cl_active": ("active_clients", "Client connections linked to a server connection or idle"),
        "cl_waiting": (
            "waiting_clients",
            "Client connections that have sent queries but have no server connection yet",
        ),
        "sv_active": ("pool_active_servers", "Server connections linked to a client (in a transaction)"),
        "sv_idle": ("pool_idle_servers", "Server connections idle and ready for a client"),
        "sv_used": ("pool_used_servers", "Server connections idle longer than server_check_delay"),
        "maxwait_seconds": ("pool_maxwait_seconds", "How long the oldest waiting client has waited, in seconds"),
    }
    collectors.DatabasesCollector.metrics = {
        "pool_size": ("pool_size", "Server connections per user and database"),
        "reserve_pool": ("reserve_pool", "Extra server connections when clients wait"),
        "max_connections": ("database_max_connections", "Server connections allowed to this database (0: no limit)"),
        "current_connections": ("database_current_connections", "Server connections to this database now"),
    }
    by_column = utils.get_data_by_named_column

    def rows(connection: Any, key: str) -> list[dict[str, Any]]:
        found = by_column(connection, key)
        for row in found:
            if "maxwait" in row:
                row["maxwait_seconds"] = row["maxwait"] + row.get("maxwait_us", 0) / 1e6
        return found

    collectors.get_data_by_named_column = rows
    connect = utils.get_connection
    cli.get_connection = lambda *args: _Reconnecting(connect, *args)
    cli.main()


if __name__ == "__main__":
    main()
