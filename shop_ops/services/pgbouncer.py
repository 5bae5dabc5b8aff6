"""PgBouncer 1.18 (Debian's `pgbouncer`) in transaction pooling in front of one PostgreSQL database, as a child process on 127.0.0.1.

The backend's many short transactions share `pool_size` server connections; up to
`max_client_conn` clients may be connected at once (far more than PostgreSQL's
`max_connections`). Migrations, the deploy advisory lock, `pg_export_snapshot` and pgBackRest
keep direct sessions to PostgreSQL: they hold session state across transactions.

Authentication (`auth_type = scram-sha-256`, `auth_file`): the auth file holds each login role's
SCRAM verifier exactly as PostgreSQL stores it (read from `pg_authid` by the superuser over its
unix socket: `sync_auth`). A client proves its password to PgBouncer against that verifier, and
PgBouncer reuses the client's SCRAM proof to log in to PostgreSQL, so no password is stored in
plain text anywhere here. Chosen over `auth_query`, which needs a SECURITY DEFINER lookup
function in every pooled database and an extra role whose own password PgBouncer must hold;
the price is that a password change must be followed by `sync_auth` (which reloads PgBouncer).

The stats user (`stats_user`, read-only `SHOW POOLS/STATS/...` on the `pgbouncer` console) has
a random password made once: in `stats_password_file` and `stats_pgpass` (0600, for the
exporter's libpq), its SCRAM verifier in the auth file.

Files in `folder`: pgbouncer.ini and userlist.txt (0600, PgBouncer's OS user), pid file, and
pgbouncer.log: PgBouncer's log on stderr, one line per event,
`YYYY-MM-DD HH:MM:SS.mmm TZ [pid] LEVEL message` (LEVEL: LOG, WARNING, ERROR, FATAL; e.g.
`2026-11-30 20:31:02.114 UTC [4711] LOG C-0x55d0...: shop/shop@127.0.0.1:40722 login attempt: db=shop user=shop tls=no`).
Rotate it by copying and truncating (the file is opened for appending).
As root, PgBouncer switches to PostgreSQL's OS user (`user =`): it refuses to run as root.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shop_ops.services.files import ensure_secret_file, write_pgpass, write_private
from shop_ops.services.processes import (
    PostgresCluster,
    ServiceError,
    launch_daemon,
    pg_os_user,
    pid_alive,
    port_is_open,
    read_pid,
    require_free_port,
    scram_verifier,
    stop_own,
)

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_RELOADED = "got SIGHUP, re-reading config"


def _quoted(value: str) -> str:
    """A value of PgBouncer's auth file: in double quotes, a double quote doubled."""
    return '"' + value.replace('"', '""') + '"'


@dataclass
class PgBouncer:
    """PgBouncer on 127.0.0.1:`port` pooling database `database` of the PostgreSQL on 127.0.0.1:`upstream_port`.

    Clients connect to `database` with their own role (one pool per role); `pool_size` server
    connections per pool, `max_client_conn` clients in all. Call `sync_auth` before `start`, and
    after every password change of a pooled role.
    """

    folder: Path
    port: int
    upstream_port: int
    database: str
    pool_size: int = 20
    max_client_conn: int = 1000
    stats_user: str = "pgbouncer_stats"
    # A client that waited this long for a server connection gets an error (PgBouncer's default: 120 s).
    query_wait_timeout_s: int = 120
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        for what, name in (("database", self.database), ("stats_user", self.stats_user)):
            if not _NAME.fullmatch(name):
                raise ValueError(f"PgBouncer's {what} {name!r} must be a plain identifier (letters, digits, _)")
        if self.pool_size < 1 or self.max_client_conn < self.pool_size:
            raise ValueError(
                f"PgBouncer needs pool_size >= 1 and max_client_conn >= pool_size, got {self.pool_size} and "
                f"{self.max_client_conn}"
            )

    # ------------------------------------------------------------------ paths and addresses
    @property
    def config(self) -> Path:
        return self.folder / "pgbouncer.ini"

    @property
    def auth_file(self) -> Path:
        return self.folder / "userlist.txt"

    @property
    def pidfile(self) -> Path:
        return self.folder / "pgbouncer.pid"

    @property
    def log(self) -> Path:
        return self.folder / "pgbouncer.log"

    @property
    def stats_password_file(self) -> Path:
        return self.folder / "stats-password"

    @property
    def stats_pgpass(self) -> Path:
        """A libpq password file for the stats user on the console (`PGPASSFILE` of the exporter)."""
        return self.folder / "stats.pgpass"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def dsn(self, user: str, driver: str = "postgresql") -> str:
        """Where `user` connects to the pooled database (no password: it comes from a file)."""
        return f"{driver}://{user}@127.0.0.1:{self.port}/{self.database}"

    def stats_dsn(self) -> str:
        """The admin console (`SHOW POOLS`, `SHOW STATS`) as the stats user; password in `stats_pgpass`."""
        return f"postgresql://{self.stats_user}@127.0.0.1:{self.port}/pgbouncer"

    # ------------------------------------------------------------------ configuration
    def render(self) -> str:
        """pgbouncer.ini: transaction pooling, SCRAM logins from the auth file, TCP on 127.0.0.1 only."""
        user = pg_os_user()
        lines = [
            "; written by shop_ops.services.pgbouncer: changes are overwritten",
            "[databases]",
            f"{self.database} = host=127.0.0.1 port={self.upstream_port} dbname={self.database}",
            "",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "unix_socket_dir =",
            # Room for a burst of new clients at once (the kernel caps it at net.core.somaxconn).
            f"listen_backlog = {min(max(self.max_client_conn, 128), 4096)}",
            "auth_type = scram-sha-256",
            f"auth_file = {self.auth_file}",
            f"stats_users = {self.stats_user}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            f"max_db_connections = {self.pool_size}",
            f"max_client_conn = {self.max_client_conn}",
            f"query_wait_timeout = {self.query_wait_timeout_s}",
            # Unknown startup parameters are refused (a client must not believe a setting took effect):
            # session settings belong on the role (ALTER ROLE ... SET).
            "ignore_startup_parameters =",
            "server_reset_query =",
            "log_connections = 0",
            "log_disconnections = 0",
            "log_pooler_errors = 1",
            "stats_period = 60",
            "syslog = 0",
        ]
        if user:
            lines.append(f"user = {user}")
        return "\n".join(lines) + "\n"

    def write_config(self) -> None:
        self._ensure_folder()
        write_private(self.config, self.render(), pg_os_user())

    def _ensure_folder(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o755)  # PgBouncer's OS user re-reads its files on reload; secrets are 0600

    def _stats_password(self) -> str:
        """The stats user's password, made once (0600 file)."""
        ensure_secret_file(self.stats_password_file)
        return self.stats_password_file.read_text().strip()

    def sync_auth(self, cluster: PostgresCluster, roles: Sequence[str]) -> None:
        """Copy the SCRAM verifiers of `roles` from the cluster's pg_authid into the auth file (with the stats
        user's); reload a running PgBouncer. Call it after any password change of those roles."""
        for role in roles:
            if not _NAME.fullmatch(role):
                raise ValueError(f"role name {role!r} must be a plain identifier")
        self._ensure_folder()
        names = ", ".join(f"'{role}'" for role in roles)
        rows = cluster.psql(f"SELECT rolname, coalesce(rolpassword, '') FROM pg_authid WHERE rolname IN ({names})")
        found = dict(line.split("|", 1) for line in rows.splitlines() if line)
        problems = []
        for role in roles:
            verifier = found.get(role)
            if verifier is None:
                problems.append(f"role {role} does not exist on port {cluster.port}")
            elif not verifier.startswith("SCRAM-SHA-256$"):
                problems.append(
                    f"role {role} has no SCRAM-SHA-256 password (set one with password_encryption = scram-sha-256)"
                )
        if problems:
            raise ServiceError("PgBouncer's auth file: " + "; ".join(problems))
        password = self._stats_password()
        entries = {**{role: found[role] for role in roles}, self.stats_user: scram_verifier(password)}
        write_private(self.auth_file, "".join(f"{_quoted(k)} {_quoted(v)}\n" for k, v in entries.items()), pg_os_user())
        write_pgpass(self.stats_pgpass, "127.0.0.1", self.port, "pgbouncer", self.stats_user, password)
        if self.running():
            self.reload()

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout: float = 10) -> None:
        """Write the configuration, start PgBouncer and wait until it accepts connections."""
        if self.running():
            return
        binary = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if Path("/usr/sbin/pgbouncer").exists() else None)
        if binary is None:
            raise ServiceError("pgbouncer not found: install Debian's pgbouncer package (make install)")
        require_free_port(self.port, "PgBouncer")
        if not self.auth_file.is_file():
            raise ServiceError(f"PgBouncer's auth file {self.auth_file} does not exist: call sync_auth first")
        self.write_config()
        self.process = launch_daemon([binary, str(self.config)], self.log, self.pidfile)
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:]
                self.stop()
                raise ServiceError(f"PgBouncer on port {self.port} did not start; {self.log} ends with:\n{tail}")
            time.sleep(0.05)

    def _owns(self, pid: int) -> bool:
        """`pid` is a PgBouncer running this folder's configuration (not a reused pid)."""
        return pid_alive(pid, "pgbouncer") and pid_alive(pid, str(self.config))

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and self._owns(pid)

    def reload(self, timeout: float = 5) -> None:
        """SIGHUP: PgBouncer re-reads its configuration and auth file (and reopens its log); waits until it has."""
        pid = read_pid(self.pidfile)
        if pid is None or not self._owns(pid):
            raise ServiceError(f"PgBouncer ({self.folder}) is not running: nothing to reload")
        offset = self.log.stat().st_size if self.log.exists() else 0
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + timeout
        while _RELOADED not in self._log_text(offset):
            if time.monotonic() > deadline:
                raise ServiceError(f"PgBouncer (pid {pid}) did not log a reload within {timeout:g} s; see {self.log}")
            time.sleep(0.05)

    def _log_text(self, offset: int = 0) -> str:
        """The log from byte `offset` on ("" if it cannot be read)."""
        try:
            with open(self.log, "rb") as fh:
                fh.seek(offset)
                return fh.read().decode(errors="replace")
        except OSError:
            return ""

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (immediate shutdown: clients are disconnected) to its own pid; SIGKILL after `timeout`."""
        stop_own(self.process, self.pidfile, self._owns, timeout, f"PgBouncer on port {self.port}")
        self.process = None
