"""Prometheus exporters and the Pushgateway (Debian's programs) as child processes on 127.0.0.1, pid file and log in a folder.

One class per program, sharing one lifecycle (`Exporter`): `start` checks the program and the
port, starts it in its own session with a small environment of its own (nothing inherited that
could hold a secret), writes the pid file and waits until `/metrics` answers; `running` and
`stop` act on the pid the pid file names, and only when that process is this program serving
this port (SIGTERM, then SIGKILL).

Secrets never go on a command line (which `ps` shows to every user) nor into an environment
variable holding the secret itself:
- `PostgresExporter`: the password is read by the exporter from a file
  (`DATA_SOURCE_PASS_FILE`, with `DATA_SOURCE_URI` and `DATA_SOURCE_USER`: postgres_exporter
  0.11 reads these when `DATA_SOURCE_NAME` is unset); a DSN holding a password is refused.
- `RedisExporter`: `-redis.password-file` names a JSON file {"redis://host:port": password}
  (mode 0600, in the exporter's folder), written from the plain secret file it is given.
- `PgBouncerExporter`: libpq reads the stats user's password from a pgpass file (`PGPASSFILE`,
  mode 0600, written by `PgBouncer.sync_auth`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from shop_ops.services.processes import (
    ServiceError,
    launch_daemon,
    pid_alive,
    read_pid,
    require_free_port,
    stop_own,
    wait_for_http,
)

# What runs on the machine itself (cheap, and readable without privileges): CPU, memory, load,
# disks and their space, network, boot time (stat), kernel name and clock. No textfile
# collector: the pipeline's own figures go to the Pushgateway.
NODE_COLLECTORS = ("cpu", "diskstats", "filesystem", "loadavg", "meminfo", "netdev", "stat", "time", "uname")
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")


@dataclass
class Exporter:
    """One exporter process on 127.0.0.1:`port`; its pid file and log in `folder`.

    Subclasses name the Debian program (`program`, from the package `package`) and give its
    arguments (`args`) and extra environment (`extra_env`).
    """

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False, compare=False)

    program: ClassVar[str] = ""
    package: ClassVar[str] = ""
    title: ClassVar[str] = "exporter"

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, as a Prometheus scrape target."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def metrics_url(self) -> str:
        return f"{self.url}/metrics"

    @property
    def pidfile(self) -> Path:
        return self.folder / f"{self.program}.pid"

    @property
    def log(self) -> Path:
        return self.folder / f"{self.program}.log"

    def args(self) -> list[str]:
        """The program's arguments (no secrets: the command line is public on this machine)."""
        raise NotImplementedError

    def extra_env(self) -> dict[str, str]:
        """Environment variables of the program beside PATH (no secret values, only where to read them)."""
        return {}

    def prepare(self) -> None:
        """Files the program needs in `folder` before it starts (the folder exists)."""

    def binary(self) -> str:
        found = shutil.which(self.program)
        if found is None:
            raise ServiceError(f"{self.program} not found: install Debian's {self.package} package (make install)")
        return found

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until /metrics answers 200; ServiceError with the log's tail if it does not."""
        binary = self.binary()
        if self.running():
            return
        require_free_port(self.port, f"the {self.title}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.prepare()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **self.extra_env()}
        self.process = launch_daemon([binary, *self.args()], self.log, self.pidfile, env=env)
        try:
            wait_for_http(self.metrics_url, timeout, self.process, self.log)
        except ServiceError as exc:
            self.stop()
            raise ServiceError(f"the {self.title} on port {self.port} did not start: {exc}") from None

    def _owns(self, pid: int) -> bool:
        """`pid` is this program serving this port (not a reused pid, not another copy)."""
        return pid_alive(pid, self.program) and pid_alive(pid, self.address)

    def running(self) -> bool:
        """The process the pid file names is alive and is this program on this port."""
        pid = read_pid(self.pidfile)
        return pid is not None and self._owns(pid)

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM to its own pid (from the pid file when another process started it); SIGKILL after `timeout`."""
        stop_own(self.process, self.pidfile, self._owns, timeout, f"the {self.title} on port {self.port}")
        self.process = None


@dataclass
class NodeExporter(Exporter):
    """prometheus-node-exporter with only the cheap, unprivileged collectors of NODE_COLLECTORS."""

    program: ClassVar[str] = "prometheus-node-exporter"
    package: ClassVar[str] = "prometheus-node-exporter"
    title: ClassVar[str] = "node exporter"

    def args(self) -> list[str]:
        return [
            f"--web.listen-address={self.address}",
            "--collector.disable-defaults",
            *(f"--collector.{name}" for name in NODE_COLLECTORS),
        ]


@dataclass(kw_only=True)
class PostgresExporter(Exporter):
    """prometheus-postgres-exporter (0.11) for one cluster.

    `dsn`: `postgresql://user@host:port/database` without a password (refused if it has one);
    `password_file`: a file holding only the password, read by the exporter itself. Without an
    `sslmode` in the DSN: `disable` on loopback, `require` elsewhere (lib/pq's default).
    """

    dsn: str
    password_file: Path | None = None
    # Custom queries (`--extend.query-path`), e.g. infra/prometheus/postgres-exporter/queries.yaml: 0.11
    # serves no replication lag in seconds of its own.
    queries: Path | None = None

    program: ClassVar[str] = "prometheus-postgres-exporter"
    package: ClassVar[str] = "prometheus-postgres-exporter"
    title: ClassVar[str] = "postgres exporter"

    def __post_init__(self) -> None:
        parts = urlsplit(self.dsn)
        if parts.scheme not in ("postgres", "postgresql"):
            raise ValueError(f"the postgres exporter's DSN must start with postgresql://, not {parts.scheme or '?'}://")
        if parts.password is not None:
            raise ValueError(
                "the postgres exporter's DSN carries a password: give the password as password_file "
                "(the exporter reads it from there), never in the DSN"
            )
        if not parts.username or not parts.hostname:
            raise ValueError("the postgres exporter's DSN needs a user and a host: postgresql://user@host:port/db")

    def _uri(self) -> str:
        """host:port/database?options, with sslmode set."""
        parts = urlsplit(self.dsn)
        query = dict(parse_qsl(parts.query))
        query.setdefault("sslmode", "disable" if parts.hostname in LOOPBACK_HOSTS else "require")
        host = parts.netloc.rsplit("@", 1)[1]
        return f"{host}{parts.path or '/postgres'}?{urlencode(query)}"

    def prepare(self) -> None:
        if self.password_file is not None and not self.password_file.is_file():
            raise ServiceError(f"the postgres exporter's password file {self.password_file} does not exist")
        if self.queries is not None and not self.queries.is_file():
            raise ServiceError(f"the postgres exporter's queries file {self.queries} does not exist")

    def args(self) -> list[str]:
        args = [f"--web.listen-address={self.address}", "--log.level=warn"]
        if self.queries is not None:
            args.append(f"--extend.query-path={self.queries.resolve()}")
        return args

    def extra_env(self) -> dict[str, str]:
        user = urlsplit(self.dsn).username or ""
        if self.password_file is None:
            return {"DATA_SOURCE_NAME": f"postgresql://{user}@{self._uri()}"}
        return {
            "DATA_SOURCE_URI": self._uri(),
            "DATA_SOURCE_USER": user,
            "DATA_SOURCE_PASS_FILE": str(self.password_file.resolve()),
        }


@dataclass(kw_only=True)
class RedisExporter(Exporter):
    """prometheus-redis-exporter (1.45) for the Redis at `redis_address` (host:port).

    `password_file`: a file holding only the password; `prepare` turns it into the JSON map
    `-redis.password-file` reads (mode 0600 in `folder`).
    """

    redis_address: str
    password_file: Path | None = None
    # The ACL user the password belongs to (None: the default user).
    user: str | None = None

    program: ClassVar[str] = "prometheus-redis-exporter"
    package: ClassVar[str] = "prometheus-redis-exporter"
    title: ClassVar[str] = "redis exporter"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.redis_address}"

    @property
    def password_map(self) -> Path:
        return self.folder / "redis-passwords.json"

    def prepare(self) -> None:
        self.password_map.unlink(missing_ok=True)
        if self.password_file is None:
            return
        try:
            password = self.password_file.read_text().strip()
        except OSError as exc:
            raise ServiceError(
                f"the redis exporter's password file {self.password_file} cannot be read: {exc}"
            ) from exc
        fd = os.open(self.password_map, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({self.redis_url: password}, fh)

    def args(self) -> list[str]:
        args = [f"-web.listen-address={self.address}", f"-redis.addr={self.redis_url}"]
        if self.password_file is not None:
            args.append(f"-redis.password-file={self.password_map}")
        if self.user is not None:
            args.append(f"-redis.user={self.user}")
        return args


@dataclass(kw_only=True)
class NginxExporter(Exporter):
    """prometheus-nginx-exporter (0.11) reading a router's stub_status page at `status_url`.

    The router must answer when it starts: the exporter retries 3 times, a second apart, then exits.
    """

    status_url: str

    program: ClassVar[str] = "prometheus-nginx-exporter"
    package: ClassVar[str] = "prometheus-nginx-exporter"
    title: ClassVar[str] = "nginx exporter"

    def args(self) -> list[str]:
        return [
            f"-web.listen-address={self.address}",
            f"-nginx.scrape-uri={self.status_url}",
            "-nginx.retries=3",
            "-nginx.retry-interval=1s",
            "-nginx.timeout=2s",
        ]


@dataclass(kw_only=True)
class Pushgateway(Exporter):
    """prometheus-pushgateway keeping what was pushed in `folder`/pushgateway.data across restarts."""

    persistence_interval: str = "1m"

    program: ClassVar[str] = "prometheus-pushgateway"
    package: ClassVar[str] = "prometheus-pushgateway"
    title: ClassVar[str] = "Pushgateway"

    @property
    def persistence_file(self) -> Path:
        return self.folder / "pushgateway.data"

    def args(self) -> list[str]:
        return [
            f"--web.listen-address={self.address}",
            f"--persistence.file={self.persistence_file}",
            f"--persistence.interval={self.persistence_interval}",
            "--log.level=warn",
        ]


@dataclass(kw_only=True)
class PgBouncerExporter(Exporter):
    """Debian's prometheus-pgbouncer-exporter (1.7) for the PgBouncer on 127.0.0.1:`pgbouncer_port`.

    Run through `pgbouncer_exporter_compat` (by the Python the package is installed into): 1.7 reads
    `SHOW STATS` columns PgBouncer 1.18 no longer has. It logs in to the console as `user` (a
    `stats_users` entry) with the password from `pgpass_file` (libpq's PGPASSFILE, mode 0600), and
    reports the pools of `database` only (not the console's own).
    """

    pgbouncer_port: int
    user: str
    pgpass_file: Path
    database: str

    program: ClassVar[str] = "prometheus-pgbouncer-exporter"
    package: ClassVar[str] = "prometheus-pgbouncer-exporter"
    title: ClassVar[str] = "pgbouncer exporter"

    @property
    def compat_script(self) -> Path:
        return Path(__file__).resolve().with_name("pgbouncer_exporter_compat.py")

    def binary(self) -> str:
        """The interpreter of Debian's program (its `#!` line): the compat script imports its package."""
        program = super().binary()
        with open(program, "rb") as fh:
            first = fh.readline().decode(errors="replace").strip()
        if not first.startswith("#!/"):
            raise ServiceError(f"{program} is not the Python script of Debian's {self.package} package")
        return first[2:].split()[0]

    def prepare(self) -> None:
        if not self.pgpass_file.is_file():
            raise ServiceError(
                f"the pgbouncer exporter's password file {self.pgpass_file} does not exist: "
                "PgBouncer.sync_auth writes it"
            )

    def args(self) -> list[str]:
        return [
            str(self.compat_script),
            "--host=127.0.0.1",
            f"--port={self.port}",
            "--pgbouncer-host=127.0.0.1",
            f"--pgbouncer-port={self.pgbouncer_port}",
            f"--pgbouncer-user={self.user}",
            f"--database={self.database}",
        ]

    def extra_env(self) -> dict[str, str]:
        return {"PGPASSFILE": str(self.pgpass_file.resolve()), "PGSSLMODE": "disable", "PGCONNECT_TIMEOUT": "3"}

    def _owns(self, pid: int) -> bool:
        return pid_alive(pid, str(self.compat_script)) and pid_alive(pid, f"--port={self.port} ")
