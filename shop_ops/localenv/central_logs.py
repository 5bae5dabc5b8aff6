"""The local environment's central logs: a PostgreSQL log store of its own and the rsyslog collector that fills it.

    postgres/logs/data          the log store's cluster (database `logs`, table `logs.records`)
    logs/rsyslog/               rsyslog.conf and its pgpass (0600), work directory, own log, logrotate
    logs/containers/<env>/      the shop containers' logs (<role>_<slot>_<release>.log, written by podman)
    secrets/logs-writer-password, logs-reader-password, logs-reader.pgpass    the store's two roles

rsyslog reads every service's log (the containers in both slots, the routers' JSON access logs,
each environment's PostgreSQL, Redis, `dagster dev`) and inserts one row per line as `shop_logs`,
which may only INSERT. The pipeline reads as `shop_logs_reader` (SELECT, and DELETE for
retention) through `Settings.logs_dsn()`, its password in a pgpass file. Queries:
shop_ops/observability/logs.py, docs/observability.md.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from psycopg2.extensions import make_dsn

from shop_ops.localenv.dagster_dev import DagsterDev
from shop_ops.observability import logs
from shop_ops.resources.router import Router
from shop_ops.services.files import ensure_secret_file, write_pgpass
from shop_ops.services.processes import PostgresCluster
from shop_ops.services.rsyslog import RsyslogServer
from shop_ops.settings import Settings

Step = Callable[[str], AbstractContextManager[None]]
Undo = Callable[[str, Callable[[], None]], None]
WRITER, READER = "shop_logs", "shop_logs_reader"
DATABASE = "logs"


class CentralLogs:
    """The log store and its collector of one local stack."""

    def __init__(
        self,
        settings: Settings,
        clusters: dict[str, PostgresCluster],
        routers: dict[str, Router],
        data_sources: list[logs.LogSource],
        dagster: DagsterDev,
    ) -> None:
        self.settings = settings
        secrets_dir = settings.state_path / "secrets"
        self.writer_password = secrets_dir / "logs-writer-password"
        self.reader_password = secrets_dir / "logs-reader-password"
        self.reader_passfile = secrets_dir / "logs-reader.pgpass"
        self.cluster = PostgresCluster(
            datadir=settings.postgres_folder(DATABASE) / "data",
            port=settings.observability.logs_postgres_port,
            tcp_auth="scram-sha-256",
        )
        self.rsyslog = RsyslogServer(settings.state_path / "logs" / "rsyslog")
        containers = settings.container_logs_dir()
        self.sources: list[logs.LogSource] = []
        self.rotated: list[Path] = []
        for env, router in routers.items():
            self.sources += [logs.container_log_source(containers, env, role) for role in ("backend", "frontend")]
            self.sources.append(logs.LogSource(router.folder / "access.log", "router", env, "json"))
            self.sources.append(logs.LogSource(clusters[env].datadir / "server.log", "postgresql", env, "postgresql"))
            self.rotated.append(router.folder / "access.log")
        self.sources += data_sources  # the data tier's: Redis, Sentinel, PgBouncer, replicas
        self.sources.append(logs.LogSource(dagster.log, "dagster", "local", "dagster"))

    @property
    def store(self) -> logs.LogStore:
        return logs.LogStore(DATABASE, self.cluster.port, WRITER, password_file=self.writer_password)

    def _admin_dsn(self) -> str:
        """The superuser over the cluster's unix socket (inside its data folder)."""
        return make_dsn(
            host=str(self.cluster.socket_dir), port=self.cluster.port, user=self.cluster.user, dbname=DATABASE
        )

    # ------------------------------------------------------------------ lifecycle
    def up(self, step: Step, say: Callable[[str], None], undo: Undo) -> None:
        cluster = self.cluster
        if cluster.running():
            say(f"log store (postgres) on 127.0.0.1:{cluster.port} ... already running")
        else:
            with step(f"starting the log store (postgres) on 127.0.0.1:{cluster.port}"):
                (cluster.datadir / "postmaster.pid").unlink(missing_ok=True)
                cluster.init()
                cluster.start()
            undo("log store (postgres)", cluster.stop)
        self._ensure_roles()
        removed = logs.delete_older_than(self.settings.logs_dsn(), self.settings.observability.log_retention_days)
        if removed:
            say(f"log store: {removed} lines older than {self.settings.observability.log_retention_days} days deleted")
        for source in self.sources:  # imfile watches folders that exist
            Path(str(source.path)).parent.mkdir(parents=True, exist_ok=True)
        before = self.rsyslog.config.read_text() if self.rsyslog.config.exists() else None
        logs.write_config(self.rsyslog, self.sources, self.store, rotate=self.rotated)
        self.rsyslog.rotate()
        if self.rsyslog.running():
            if before == self.rsyslog.config.read_text():
                say(f"log collector (rsyslog, pid {self.rsyslog.pid}) ... already running")
                return
            with step("restarting the log collector (rsyslog: its configuration changed)"):
                self.rsyslog.stop()
                self.rsyslog.start()
            return
        with step(
            f"starting the log collector (rsyslog: {len(self.sources)} inputs -> {DATABASE} on port {cluster.port})"
        ):
            self.rsyslog.start()
        undo("log collector (rsyslog)", self.rsyslog.stop)

    def _ensure_roles(self) -> None:
        """Database `logs`, its table, the writer (INSERT only) and the reader (SELECT, DELETE), passwords from files."""
        for path in (self.writer_password, self.reader_password):
            ensure_secret_file(path)
        self.cluster.create_database(DATABASE)
        logs.ensure_schema(self._admin_dsn(), writer=WRITER, writer_password=self.writer_password.read_text().strip())
        password = self.reader_password.read_text().strip()
        self.cluster.set_role_password(READER, password)
        self.cluster.psql(
            f"GRANT USAGE ON SCHEMA logs TO {READER}; GRANT SELECT, DELETE ON logs.records TO {READER};", DATABASE
        )
        write_pgpass(self.reader_passfile, "127.0.0.1", self.cluster.port, DATABASE, READER, password)

    def down(self, stop: Callable[[str, Callable[[], bool], Callable[[], None]], None]) -> None:
        stop("log collector (rsyslog)", self.rsyslog.running, self.rsyslog.stop)
        stop("log store (postgres)", self.cluster.running, self.cluster.stop)

    def ports(self) -> list[tuple[int, str, Callable[[], bool]]]:
        return [(self.cluster.port, "log store (postgres)", self.cluster.running)]

    def status(self) -> dict[str, Any]:
        return {
            "logs": {
                "up": self.cluster.ready() and self.rsyslog.running(),
                "store": self.settings.logs_dsn(),
                "collector_pid": self.rsyslog.pid,
                "inputs": len(self.sources),
                "collector_log": str(self.rsyslog.internal_log),
            }
        }

    def urls(self) -> list[tuple[str, str]]:
        return [("central logs", f"{self.settings.logs_dsn()}  (table logs.records)")]
