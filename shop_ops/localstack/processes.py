"""Real PostgreSQL clusters and Redis servers as child processes on 127.0.0.1, state in a folder.

Plain functions and classes used by the local environment and by the test fixtures alike.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)


class ServiceError(RuntimeError):
    """A service did not start or stop; the message names it and says what to do."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def pg_bin(name: str) -> str:
    """Path of a PostgreSQL 15 program (Debian keeps them off PATH)."""
    for folder in PG_BIN_CANDIDATES:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise ServiceError(f"{name} not found: install PostgreSQL 15 (apt-get install postgresql-15)")


def pg_os_user() -> str | None:
    """PostgreSQL refuses to run as root: as root, its programs run as the `postgres` OS user."""
    if os.geteuid() != 0:
        return None
    return os.environ.get("SHOP_OPS_PG_OS_USER", "postgres")


def as_pg_user(cmd: list[str]) -> list[str]:
    user = pg_os_user()
    return ["runuser", "-u", user, "--", *cmd] if user else cmd


def hand_to_pg_user(path: Path) -> None:
    """Give `path` (recursively) to the OS user PostgreSQL runs as, when that is not us."""
    user = pg_os_user()
    if user:
        shutil.chown(path, user, user)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), user, user)


def _run(cmd: list[str], what: str) -> None:
    result = subprocess.run(as_pg_user(cmd), capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceError(f"{what} failed ({' '.join(cmd[:2])}): {result.stderr.strip()[-800:]}")


@dataclass
class PostgresCluster:
    """One PostgreSQL 15 cluster in `datadir`, listening on 127.0.0.1:`port`."""

    datadir: Path
    port: int
    user: str = "postgres"
    wal_archive: Path | None = None
    extra_conf: dict[str, str] = field(default_factory=dict)

    @property
    def socket_dir(self) -> Path:
        return self.datadir / "socket"

    def dsn(self, database: str = "postgres", user: str | None = None, driver: str = "postgresql") -> str:
        return f"{driver}://{user or self.user}@127.0.0.1:{self.port}/{database}"

    def init(self) -> None:
        """initdb once (trust auth on loopback only; the cluster is private to this machine)."""
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        hand_to_pg_user(self.datadir)
        _run(
            [pg_bin("initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-instructions"],
            f"initdb of {self.datadir}",
        )  # fmt: skip
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.socket_dir}'",
            "max_connections": "200",
            "shared_buffers": "128MB",
            "fsync": "on",
            "log_min_messages": "warning",
        }
        if self.wal_archive is not None:
            self.wal_archive.mkdir(parents=True, exist_ok=True)
            hand_to_pg_user(self.wal_archive)
            conf.update(
                {
                    "wal_level": "replica",
                    "archive_mode": "on",
                    "archive_command": f"'test ! -f {self.wal_archive}/%f && cp %p {self.wal_archive}/%f'",
                    "archive_timeout": "60",
                }
            )
        conf.update(self.extra_conf)
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write("\n# shop-ops\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))

    def start(self, timeout: float = 30) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for PostgreSQL ({self.datadir}) is already in use")
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        hand_to_pg_user(self.socket_dir)
        _run(
            [pg_bin("pg_ctl"), "-D", str(self.datadir), "-o", f"-p {self.port}", "-l",
             str(self.datadir / "server.log"), "-w", "-t", str(int(timeout)), "start"],
            f"PostgreSQL on port {self.port}",
        )  # fmt: skip

    def stop(self) -> None:
        if (self.datadir / "postmaster.pid").exists():
            subprocess.run(
                as_pg_user([pg_bin("pg_ctl"), "-D", str(self.datadir), "-m", "fast", "-w", "stop"]),
                capture_output=True,
            )

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-c", sql],
            capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceError(f"psql on port {self.port}: {result.stderr.strip()}")
        return result.stdout.strip()

    def create_database(self, name: str, owner: str | None = None) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            return
        if owner and not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
            self.psql(f'CREATE ROLE "{owner}" LOGIN')
        self.psql(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))


@dataclass
class RedisServer:
    """A Redis 7 server on 127.0.0.1:`port`, data in `datadir`."""

    datadir: Path
    port: int
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def pidfile(self) -> Path:
        return self.datadir / "redis.pid"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self, timeout: float = 10) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for Redis is already in use")
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: install it (apt-get install redis-server)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        args = [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.datadir),
                "--pidfile", str(self.pidfile), "--save", "", "--appendonly", "no",
                "--logfile", str(self.datadir / "redis.log")]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"Redis on port {self.port} did not start; see {self.datadir / 'redis.log'}")
            time.sleep(0.05)

    def stop(self) -> None:
        pid = self.process.pid if self.process else _read_pid(self.pidfile)
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.process is not None:
            self.process.wait(timeout=10)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
