"""Real PostgreSQL clusters, Redis, Prometheus and Alertmanager servers as child processes on 127.0.0.1, state in a folder.

Plain functions and classes used by the local environment and by the test fixtures alike.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import random
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shop_ops.services.files import ensure_secret_file, write_pgpass, write_private

PG_BIN_CANDIDATES = ("/usr/lib/postgresql/15/bin",)


class ServiceError(RuntimeError):
    """A service did not start or stop; the message names it and says what to do."""


# Ports below the kernel's ephemeral range: an outgoing connection never takes one of them between
# the moment a port is chosen and the moment its server binds it (CI once lost a run to that).
_LOWEST_PORT = 15000
_handed_out: set[int] = set()


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing uses right now, outside the ephemeral range, not handed out before."""
    low = _ephemeral_range()[0]
    candidates = range(_LOWEST_PORT, low - 16)  # room for a run of consecutive ports after it
    for _ in range(200):
        port = random.choice(candidates)
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ServiceError(f"no free TCP port between {_LOWEST_PORT} and {low - 16} on 127.0.0.1 after 200 tries")


def port_is_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


def wait_for_http(
    url: str, timeout: float = 30, process: subprocess.Popen[bytes] | None = None, log: Path | None = None
) -> None:
    """Until GET `url` answers 200; ServiceError (with the log's tail) if `process` exits or time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        if process is not None and process.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise ServiceError(f"the process serving {url} exited ({process.returncode}): {tail}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:] if log else ""
            raise ServiceError(f"{url} did not answer 200 within {timeout:.0f}s: {tail}")
        time.sleep(0.1)


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


def pg_user_can_enter(path: Path) -> bool:
    """The OS user PostgreSQL runs as can reach `path` (every folder above it lets that user through)."""
    return subprocess.run(as_pg_user(["test", "-x", str(path)]), capture_output=True).returncode == 0


def hand_to_pg_user(path: Path) -> None:
    """Give `path` (recursively) to the OS user PostgreSQL runs as, when that is not us."""
    user = pg_os_user()
    if user:
        shutil.chown(path, user, user)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                shutil.chown(os.path.join(root, name), user, user)


def conf_string(value: str) -> str:
    """A postgresql.conf string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def pg_shell_word(value: str) -> str:
    """One shell word inside a PostgreSQL %-command (archive_command, restore_command): quoted, a literal % doubled."""
    return shlex.quote(value).replace("%", "%%")


# A unix socket's path (folder + "/.s.PGSQL.<port>") must fit sockaddr_un.sun_path: 107 bytes.
UNIX_SOCKET_PATH_MAX = 107


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
    # "trust" (test clusters) or "scram-sha-256": TCP logins then need a password, and the
    # superuser administers the cluster over its unix socket (inside the 0700 data folder).
    tcp_auth: str = "trust"

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
        if not pg_user_can_enter(self.datadir.parent):
            raise ServiceError(
                f"PostgreSQL runs as the OS user {pg_os_user()}, which cannot enter {self.datadir.parent} "
                "(a folder above it is closed to other users, e.g. a home folder of mode 700): "
                "put the data folder where that user can reach it"
            )
        hand_to_pg_user(self.datadir)
        _run(
            [pg_bin("initdb"), "-D", str(self.datadir), "-U", self.user, "--auth=trust", "-E", "UTF8",
             "--locale=C.UTF-8", "--no-instructions"],
            f"initdb of {self.datadir}",
        )  # fmt: skip
        conf = {
            "listen_addresses": "'127.0.0.1'",
            # Double quotes inside the list keep a folder with spaces or commas one entry.
            "unix_socket_directories": conf_string(f'"{self.socket_dir}"'),
            "max_connections": "200",
            "shared_buffers": "128MB",
            "fsync": "on",
            "log_min_messages": "warning",
        }
        if self.wal_archive is not None:
            self.wal_archive.mkdir(parents=True, exist_ok=True)
            hand_to_pg_user(self.wal_archive)
            archive = pg_shell_word(str(self.wal_archive))
            conf.update(
                {
                    "wal_level": "replica",
                    "archive_mode": "on",
                    "archive_command": conf_string(f"test ! -f {archive}/%f && cp %p {archive}/%f"),
                    "archive_timeout": "60",
                }
            )
        conf.update(self.extra_conf)
        with open(self.datadir / "postgresql.conf", "a") as fh:
            fh.write("\n# shop-ops\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
        if self.tcp_auth != "trust":
            self._write_hba()

    def _write_hba(self) -> None:
        hba = self.datadir / "pg_hba.conf"
        hba.write_text(
            "# shop-ops: the unix socket (inside the 0700 data folder) trusts; TCP needs a password\n"
            "local   all          all                  trust\n"
            "local   replication  all                  trust\n"
            f"host    all          all   127.0.0.1/32   {self.tcp_auth}\n"
            f"host    replication  all   127.0.0.1/32   {self.tcp_auth}\n"
            f"host    all          all   ::1/128        {self.tcp_auth}\n"
        )
        hand_to_pg_user(hba)

    def running(self) -> bool:
        """The postmaster of this data folder is alive (its postmaster.pid names a live process)."""
        pidfile = self.datadir / "postmaster.pid"
        try:
            pid = int(pidfile.read_text().splitlines()[0])
        except (OSError, ValueError, IndexError):
            return False
        return pid_alive(pid, "postgres")

    def ready(self) -> bool:
        """pg_isready over TCP: the server accepts connections now."""
        result = subprocess.run(
            [pg_bin("pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "2"], capture_output=True
        )
        return result.returncode == 0

    def start(self, timeout: float = 30) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for PostgreSQL ({self.datadir}) is already in use")
        socket_path = f"{self.socket_dir}/.s.PGSQL.{self.port}"
        if len(socket_path.encode()) > UNIX_SOCKET_PATH_MAX:
            raise ServiceError(
                f"PostgreSQL's unix socket {socket_path} is longer than {UNIX_SOCKET_PATH_MAX} bytes: "
                "use a data folder with a shorter path (e.g. a shorter SHOP_OPS_STATE)"
            )
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        hand_to_pg_user(self.socket_dir)
        if not self.running():
            # A socket lock file without its postmaster: left by a crash, or restored with the data
            # folder from a physical backup (the socket folder lives inside it). PostgreSQL refuses
            # to start over it.
            for stale in self.socket_dir.glob(".s.PGSQL.*.lock"):
                stale.unlink(missing_ok=True)
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

    @property
    def admin_host(self) -> str:
        """Where the superuser connects: TCP when it trusts loopback, else the unix socket (inside the data folder)."""
        return "127.0.0.1" if self.tcp_auth == "trust" else str(self.socket_dir)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run SQL as the superuser (given on stdin, so it never shows in a process list)."""
        host = self.admin_host
        result = subprocess.run(
            [pg_bin("psql"), "-h", host, "-p", str(self.port), "-U", self.user, "-d", database,
             "-v", "ON_ERROR_STOP=1", "-At", "-f", "-"],
            input=sql, capture_output=True, text=True,
        )  # fmt: skip
        if result.returncode != 0:
            raise ServiceError(f"psql on port {self.port}: {result.stderr.strip()}")
        return result.stdout.strip()

    def set_role_defaults(self, role: str, values: dict[str, str]) -> None:
        """`ALTER ROLE role SET name = value` for each: the role's sessions start with them (through a pooler too)."""
        for name, value in values.items():
            if not re.fullmatch(r"[a-z_.]+", name):
                raise ServiceError(f"{name!r} is not a PostgreSQL setting name")
            self.psql(f'ALTER ROLE "{role}" SET {name} = {_sql_string(value)}')

    def create_database(self, name: str, owner: str | None = None) -> None:
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'"):
            return
        if owner and not self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{owner}'"):
            self.psql(f'CREATE ROLE "{owner}" LOGIN')
        self.psql(f'CREATE DATABASE "{name}"' + (f' OWNER "{owner}"' if owner else ""))

    def create_extension(self, name: str, database: str) -> None:
        """`CREATE EXTENSION IF NOT EXISTS name` in `database`, as the superuser."""
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", name):
            raise ServiceError(f"{name!r} is not an extension name")
        self.psql(f'CREATE EXTENSION IF NOT EXISTS "{name}"', database)

    def apply_settings(self, settings: Mapping[str, str], timeout: float = 30) -> bool:
        """Switch this running cluster to `settings` (name -> plain value, not a postgresql.conf literal);
        True if it had to restart.

        ALTER SYSTEM (postgresql.auto.conf overrides postgresql.conf), then a reload, waited for
        until new sessions see it; a restart only when a setting that needs one (context
        `postmaster`, e.g. shared_preload_libraries, wal_level) differs or is pending.
        """
        for name in settings:
            if not re.fullmatch(r"[a-z_][a-z0-9_.]*", name):
                raise ServiceError(f"{name!r} is not a PostgreSQL setting name")
        loaded = self.psql("SELECT pg_conf_load_time()")
        self.psql("".join(f"ALTER SYSTEM SET {name} = {_sql_string(value)};\n" for name, value in settings.items()))
        self.psql("SELECT pg_reload_conf()")
        # A reload is asynchronous: a session forked after the postmaster re-read the files has its load time.
        deadline = time.monotonic() + timeout
        while self.psql(f"SELECT pg_conf_load_time() > {_sql_string(loaded)}::timestamptz") != "t":
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"PostgreSQL on port {self.port} did not reload its configuration within {timeout:.0f}s"
                )
            time.sleep(0.05)
        names = ", ".join(_sql_string(name) for name in settings)
        rows = self.psql(f"SELECT name, setting, context, pending_restart FROM pg_settings WHERE name IN ({names})")
        restart = False
        for row in rows.splitlines():
            name, setting, context, pending = row.split("|")
            if context == "postmaster" and (setting != settings[name] or pending == "t"):
                restart = True
        if restart:
            self.stop()
            self.start(timeout=timeout)
        return restart

    def set_role_password(self, role: str, password: str) -> None:
        """Create the login role `role` or set its password, without the password in any statement.

        The statement carries a SCRAM-SHA-256 verifier computed here, and its session turns off
        every log of statements (slow-query log, log_statement, the statement of a failed command)
        and pg_stat_statements' record of utility commands: a password never reaches the server
        log, the central log store or the statistics, whatever the cluster's logging settings.
        """
        if not re.fullmatch(r"[a-z_][a-z0-9_]*", role):
            raise ServiceError(f"{role!r}: use lower-case letters, digits and '_' for a role name")
        command = "ALTER" if self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{role}'") else "CREATE"
        self.psql(
            "SET log_statement = 'none';\n"
            "SET log_min_duration_statement = -1;\n"
            "SET log_min_error_statement = panic;\n"
            "SET pg_stat_statements.track_utility = off;\n"
            f'{command} ROLE "{role}" WITH LOGIN PASSWORD {_sql_string(scram_verifier(password))};\n'
        )


def scram_verifier(password: str, iterations: int = 4096, salt: bytes | None = None) -> str:
    """The SCRAM-SHA-256 verifier PostgreSQL stores for `password` (what `\\password` and libpq send instead of it).

    PostgreSQL prepares a password with SASLprep first; for an ASCII password that changes
    nothing, otherwise NFKC normalisation (SASLprep's mapping) is applied here too.
    """
    if not password:
        raise ServiceError("an empty password: write one into the password file")
    prepared = password if password.isascii() else unicodedata.normalize("NFKC", password)
    salt = salt if salt is not None else os.urandom(16)
    salted = hashlib.pbkdf2_hmac("sha256", prepared.encode(), salt, iterations)
    stored_key = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${b64(stored_key).decode()}:{b64(server_key).decode()}"


def _sql_string(value: str) -> str:
    """A standard-conforming SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def _conninfo_value(value: str) -> str:
    """One libpq connection-string value, quoted (a path may hold spaces or quotes)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


@dataclass(kw_only=True)
class PostgresReplica(PostgresCluster):
    """A hot standby of `primary` in its own `datadir` on its own `port`, streaming through a physical slot.

    Built once with `pg_basebackup -R -X stream -S <slot>` from the primary; started and stopped
    like any cluster (the inherited `start`, `stop`, `running`, `ready`, `psql`). It replicates as
    `replication_user` (LOGIN REPLICATION), whose password is in `password_file` (0600, made on
    first use); PostgreSQL's walreceiver reads it from a libpq password file of its own
    (`passfile`, 0600, PostgreSQL's OS user), never from a command line or the configuration.
    """

    primary: PostgresCluster
    password_file: Path
    # The primary keeps the WAL this replica has not received yet in this slot (a name per replica).
    slot: str = "replica"
    replication_user: str = "replicator"
    # Long reporting queries are not cancelled by replayed vacuum cleanups (the primary keeps those rows).
    hot_standby_feedback: bool = True

    def __post_init__(self) -> None:
        for what, name in (("slot", self.slot), ("replication_user", self.replication_user)):
            if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", name):
                raise ValueError(f"{what} {name!r} must be lower-case letters, digits and _ (a PostgreSQL name)")

    @property
    def passfile(self) -> Path:
        """The walreceiver's libpq password file, beside the data folder (pg_basebackup needs an empty one)."""
        return self.datadir.parent / f"{self.datadir.name}.pgpass"

    def init(self) -> None:
        """The base backup from the primary, once (an existing data folder is kept as it is)."""
        if not (self.datadir / "PG_VERSION").exists():
            self._base_backup()

    def create(self, timeout: float = 60) -> str:
        """Make the replica run and stream from the primary; say what was done, in one line.

        Idempotent: a missing data folder is built from the primary (which must be up); an
        existing one is started as it is, not rebuilt, unless the primary answers and no longer
        keeps this replica's slot (dropped, or invalidated by max_slot_wal_keep_size: the WAL the
        replica needs is gone), then it is rebuilt. With the primary down the replica still starts
        (its last state serves reads; it resumes streaming when the primary is back). When the
        primary answers, a replica it started streams before this returns (else ServiceError).
        """
        where = f"replica of 127.0.0.1:{self.primary.port} on 127.0.0.1:{self.port} ({self.datadir})"
        if not (self.datadir / "PG_VERSION").exists():
            self._base_backup()
            self.start(timeout)
            self._wait_streaming(timeout)
            return f"{where}: built with pg_basebackup (slot {self.slot}) and started"
        if not (self.datadir / "standby.signal").exists():
            raise ServiceError(
                f"{self.datadir} has no standby.signal: it was promoted and is a primary now, not a replica of "
                f"127.0.0.1:{self.primary.port}. Point the shop at one of the two (docs/runbooks/failover.md); "
                "to build a new replica here, stop it and move the folder away"
            )
        primary_up = self.primary.ready()
        problem = self.slot_problem() if primary_up else None
        if problem:
            self.stop()
            shutil.rmtree(self.datadir)
            self._base_backup()
            self.start(timeout)
            self._wait_streaming(timeout)
            return f"{where}: rebuilt, because {problem}"
        if self.running():
            return f"{where}: already running"
        self.start(timeout)
        if not primary_up:
            return f"{where}: started; the primary does not answer, it streams once it does"
        self._wait_streaming(timeout)
        return f"{where}: started"

    def _wait_streaming(self, timeout: float) -> None:
        """Until its walreceiver streams from the primary; ServiceError with the replica's log after `timeout`."""
        deadline = time.monotonic() + timeout
        while not self.streaming():
            if time.monotonic() > deadline:
                log = self.datadir / "server.log"
                tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
                raise ServiceError(
                    f"the replica on port {self.port} runs but does not stream from 127.0.0.1:{self.primary.port} "
                    f"within {timeout:.0f}s (replication password, pg_hba.conf, or the WAL it needs gone?): {tail}"
                )
            time.sleep(0.1)

    def slot_problem(self) -> str | None:
        """Why the primary cannot feed this replica any more (no slot, or a lost one); None if it can."""
        status = self._slot_status()
        if not status:
            return (
                f"the primary on port {self.primary.port} has no replication slot {self.slot} (dropped, or a new "
                "primary): the WAL the replica needs to catch up may be gone"
            )
        if status == "lost":
            return (
                f"the primary on port {self.primary.port} removed WAL that slot {self.slot} still needed "
                "(wal_status lost: the replica fell more than max_slot_wal_keep_size behind)"
            )
        return None

    def _slot_status(self) -> str:
        """The slot's wal_status on the primary (reserved, extended, unreserved, lost); "" when there is no such slot."""
        return self.primary.psql(
            f"SELECT coalesce(wal_status, '?') FROM pg_replication_slots WHERE slot_name = '{self.slot}'"
        )

    def _ensure_replication_role(self) -> str:
        """The replication role on the primary, with the password of `password_file` (made once, 0600)."""
        ensure_secret_file(self.password_file)
        password = self.password_file.read_text().strip()
        if not password:
            raise ServiceError(
                f"the replication password file {self.password_file} is empty: delete it (a new one is made)"
            )
        self.primary.set_role_password(self.replication_user, password)
        self.primary.psql(f'ALTER ROLE "{self.replication_user}" WITH REPLICATION')
        return password

    def _write_passfile(self, password: str) -> None:
        write_pgpass(self.passfile, "127.0.0.1", self.primary.port, "*", self.replication_user, password, pg_os_user())

    def _base_backup(self) -> None:
        if self.primary.tcp_auth == "trust":
            raise ServiceError(
                f"the primary on port {self.primary.port} trusts TCP logins (tcp_auth trust): a replica needs "
                "tcp_auth scram-sha-256 on it, so that replication authenticates with a password"
            )
        self.datadir.parent.mkdir(parents=True, exist_ok=True)
        if not pg_user_can_enter(self.datadir.parent):
            raise ServiceError(
                f"PostgreSQL runs as the OS user {pg_os_user()}, which cannot enter {self.datadir.parent}: "
                "put the replica's data folder where that user can reach it"
            )
        if self.datadir.exists() and any(self.datadir.iterdir()):
            raise ServiceError(
                f"{self.datadir} is not empty but holds no cluster (PG_VERSION): a base backup needs an empty "
                "folder; look at what is there and move it away"
            )
        self._write_passfile(self._ensure_replication_role())
        status = self._slot_status()
        if status == "lost":
            self.primary.psql(f"SELECT pg_drop_replication_slot('{self.slot}')")
        if status in ("", "lost"):
            # Reserved now: the WAL from here on stays until the replica has it.
            self.primary.psql(f"SELECT pg_create_physical_replication_slot('{self.slot}', true)")
        self.datadir.mkdir(mode=0o700, exist_ok=True)
        hand_to_pg_user(self.datadir)
        conninfo = " ".join(
            f"{key}={_conninfo_value(value)}"
            for key, value in (
                ("host", "127.0.0.1"), ("port", str(self.primary.port)), ("user", self.replication_user),
                ("passfile", str(self.passfile)), ("application_name", self.slot),
            )
        )  # fmt: skip
        try:
            # -c fast: a checkpoint now, not one spread over checkpoint_timeout; -w: never prompt.
            _run(
                [pg_bin("pg_basebackup"), "-D", str(self.datadir), "-d", conninfo, "-R", "-X", "stream",
                 "-S", self.slot, "-c", "fast", "-w"],
                f"pg_basebackup of the replica {self.datadir} from port {self.primary.port}",
            )  # fmt: skip
        except ServiceError:
            shutil.rmtree(self.datadir, ignore_errors=True)
            raise
        # The copy carries the primary's settings: the socket folder and anything else of the replica's
        # own go after the primary_conninfo that -R wrote (later lines win).
        conf = {
            "unix_socket_directories": conf_string(f'"{self.socket_dir}"'),
            "hot_standby": "on",
            "hot_standby_feedback": "on" if self.hot_standby_feedback else "off",
            **self.extra_conf,
        }
        with open(self.datadir / "postgresql.auto.conf", "a") as fh:
            fh.write(f"\n# shop-ops: replica of 127.0.0.1:{self.primary.port}\n")
            fh.write("".join(f"{k} = {v}\n" for k, v in conf.items()))
        for stale in ("server.log", "postmaster.opts"):
            (self.datadir / stale).unlink(missing_ok=True)
        for stale in self.socket_dir.glob(".s.PGSQL.*"):
            stale.unlink(missing_ok=True)

    # ------------------------------------------------------------------ probes and promotion
    def in_recovery(self) -> bool:
        """It is still a standby (not promoted)."""
        return self.psql("SELECT pg_is_in_recovery()") == "t"

    def streaming(self) -> bool:
        """Its walreceiver streams from the primary now."""
        return self.psql("SELECT status FROM pg_stat_wal_receiver") == "streaming"

    def lag_seconds(self) -> float:
        """How far replay is behind: 0 when it has replayed all it received, else the age of the last replayed commit."""
        return float(
            self.psql(
                "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0 "
                "ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
            )
        )

    def wait_caught_up(self, timeout: float = 30) -> None:
        """Until it has replayed everything the primary had written when called; ServiceError after `timeout`."""
        target = self.primary.psql("SELECT pg_current_wal_lsn()")
        deadline = time.monotonic() + timeout
        while self.psql(f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn") != "t":
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the replica on port {self.port} did not replay up to {target} within {timeout:.0f}s; "
                    f"see {self.datadir / 'server.log'} and pg_stat_replication on port {self.primary.port}"
                )
            time.sleep(0.1)

    def promote(self, timeout: float = 60) -> None:
        """`pg_ctl promote`: it stops following the primary and accepts writes (a new timeline).

        The primary keeps the slot (and with it WAL) until someone drops it there: see
        docs/runbooks/failover.md.
        """
        if not self.running():
            raise ServiceError(f"the replica on port {self.port} does not run: start it before promoting it")
        _run(
            [pg_bin("pg_ctl"), "-D", str(self.datadir), "-w", "-t", str(int(timeout)), "promote"],
            f"promotion of the replica on port {self.port}",
        )


def redis_word(value: str) -> str:
    """One word of a redis.conf line: as is when plain, else double-quoted with escapes."""
    if value and re.fullmatch(r"[A-Za-z0-9_.,:/@%+=~&|*<>#!^?-]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class RedisServer:
    """A Redis 7 server on 127.0.0.1:`port`, data in `datadir`, configured by `<datadir>/redis.conf` (mode 0600).

    Without `settings` and `users` a throwaway server: no persistence, no memory limit, the default
    user with `password` (or none). `settings` are more redis.conf directives, written as given (a
    cache's maxmemory, a cart store's AOF, a replica's `replicaof`); `users` its ACL `user` lines
    (then the default user is off unless a line turns it on). Secrets go only into the 0600 file, never
    on a command line. It runs with umask 077, so a CONFIG REWRITE (Sentinel asks for one when it
    changes a server's role) keeps the file private (shop_ops/services/redis.py builds the shop's
    servers and decides their roles).
    """

    datadir: Path
    port: int
    password: str | None = None
    process: subprocess.Popen[bytes] | None = None
    settings: dict[str, str] = field(default_factory=dict)
    users: list[str] = field(default_factory=list)

    @property
    def pidfile(self) -> Path:
        return self.datadir / "redis.pid"

    @property
    def config_file(self) -> Path:
        return self.datadir / "redis.conf"

    @property
    def log(self) -> Path:
        return self.datadir / "redis.log"

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def config_lines(self) -> list[str]:
        """The redis.conf this server starts with."""
        settings = {"save": '""', "appendonly": "no", **self.settings}
        lines = [
            "# shop-ops: written at each start; the server may rewrite it (CONFIG REWRITE)",
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {redis_word(str(self.datadir))}",
            f"pidfile {redis_word(str(self.pidfile))}",
            f"logfile {redis_word(str(self.log))}",
            "daemonize no",
        ]
        if self.password:
            lines.append(f"requirepass {redis_word(self.password)}")
        lines += [f"{name} {value}" for name, value in settings.items()]
        if self.users and not any(u.split()[1:2] == ["default"] for u in self.users):
            lines.append("user default off")
        lines += self.users
        return lines

    def write_config(self) -> None:
        """`<datadir>/redis.conf`, created with mode 0600 (it holds passwords)."""
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.datadir.chmod(0o700)
        write_private(self.config_file, "\n".join(self.config_lines()) + "\n")

    def start(self, timeout: float = 10) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for Redis is already in use")
        binary = shutil.which("redis-server")
        if binary is None:
            raise ServiceError("redis-server not found: install it (apt-get install redis-server)")
        self.write_config()
        # No inherited stdout/stderr: a caller capturing our output must not wait on the server.
        self.process = subprocess.Popen(
            [binary, str(self.config_file)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, umask=0o077,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                raise ServiceError(f"Redis on port {self.port} did not start; see {self.log}: {tail}")
            time.sleep(0.05)

    def running(self) -> bool:
        """The server of this data folder is alive (pid file names a live redis-server)."""
        pid = _read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "redis-server")

    def ping(self) -> bool:
        """PING answers PONG now."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith((b"+PONG", b"-NOAUTH"))
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL, as a crash looks (nothing flushed, no goodbye to replicas or Sentinel)."""
        pid = self.process.pid if self.process else _read_pid(self.pidfile)
        if pid is None or not pid_alive(pid, "redis-server"):
            return
        os.kill(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=10)
        else:
            wait_gone(pid, 10)

    def stop(self, timeout: float = 10) -> None:
        pid = self.process.pid if self.process else _read_pid(self.pidfile)
        gone = (
            self.process.poll() is not None if self.process else pid is not None and not pid_alive(pid, "redis-server")
        )
        if pid is None or gone:  # our own child that exited (killed) was reaped: its pid may be someone else's now
            self.pidfile.unlink(missing_ok=True)
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if self.process is not None:
            self.process.wait(timeout=timeout)
        else:
            wait_gone(pid, timeout)
        self.pidfile.unlink(missing_ok=True)


@dataclass
class PrometheusServer:
    """Prometheus 2 on 127.0.0.1:`port` with the configuration file `config`; its TSDB, pid file and log in `datadir`.

    `retention` (e.g. "15d") is passed explicitly, never left to the program's default. The
    lifecycle API is on, so POST /-/reload re-reads the configuration and rules.
    """

    datadir: Path
    port: int
    config: Path
    retention: str
    # What its alerts' generatorURL links to (default: its own 127.0.0.1 URL, not the machine's hostname).
    external_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def tsdb(self) -> Path:
        return self.datadir / "data"

    @property
    def pidfile(self) -> Path:
        return self.datadir / "prometheus.pid"

    @property
    def log(self) -> Path:
        return self.datadir / "prometheus.log"

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until /-/ready answers (configuration loaded, TSDB open)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise ServiceError("prometheus not found: install Debian's prometheus package (make install)")
        require_free_port(self.port, "Prometheus")
        if not self.config.is_file():
            raise ServiceError(f"Prometheus configuration {self.config} does not exist")
        self.datadir.mkdir(parents=True, exist_ok=True)
        args = [binary, f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}",
                f"--storage.tsdb.path={self.tsdb}", f"--storage.tsdb.retention.time={self.retention}",
                "--web.enable-lifecycle", "--log.level=info", f"--web.external-url={self.external_url or self.url}"]  # fmt: skip
        self.process = launch_daemon(args, self.log, self.pidfile)
        try:
            wait_for_http(f"{self.url}/-/ready", timeout, self.process, self.log)
        except ServiceError:
            self.stop()
            raise

    def running(self) -> bool:
        """The Prometheus of this data folder is alive (its pid file names a live process serving this TSDB)."""
        pid = _read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, str(self.tsdb))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its own pid (from the pid file when another process started it); SIGKILL after `timeout`."""
        stop_own(
            self.process,
            self.pidfile,
            lambda pid: pid_alive(pid, str(self.tsdb)),
            timeout,
            f"Prometheus ({self.datadir})",
        )


@dataclass
class AlertmanagerServer:
    """Alertmanager 0.25 on 127.0.0.1:`port` with the configuration file `config`; its data, pid file and log in `datadir`.

    Clustering is off (`--cluster.listen-address=` empty), so it listens on nothing but its web
    port. `external_url` (default: its own URL) is what its notifications link to. `retention`
    (how long silences and notification state are kept) is passed explicitly. POST /-/reload
    re-reads the configuration.
    """

    datadir: Path
    port: int
    config: Path
    retention: str = "120h"
    external_url: str | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def storage(self) -> Path:
        return self.datadir / "data"

    @property
    def pidfile(self) -> Path:
        return self.datadir / "alertmanager.pid"

    @property
    def log(self) -> Path:
        return self.datadir / "alertmanager.log"

    def start(self, timeout: float = 30) -> None:
        """Start it and wait until /-/ready answers (configuration loaded)."""
        binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
        if binary is None:
            raise ServiceError(
                "prometheus-alertmanager not found: install Debian's prometheus-alertmanager package (make install)"
            )
        require_free_port(self.port, "Alertmanager")
        if not self.config.is_file():
            raise ServiceError(f"Alertmanager configuration {self.config} does not exist")
        self.storage.mkdir(parents=True, exist_ok=True)
        args = [binary, f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}",
                f"--web.external-url={self.external_url or self.url}", f"--storage.path={self.storage}",
                f"--data.retention={self.retention}", "--cluster.listen-address=", "--log.level=info"]  # fmt: skip
        self.process = launch_daemon(args, self.log, self.pidfile)
        try:
            wait_for_http(f"{self.url}/-/ready", timeout, self.process, self.log)
        except ServiceError:
            self.stop()
            raise

    def running(self) -> bool:
        """The Alertmanager of this data folder is alive (its pid file names a live process using this storage)."""
        pid = _read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, str(self.storage))

    def stop(self, timeout: float = 15) -> None:
        """SIGTERM to its own pid (from the pid file when another process started it); SIGKILL after `timeout`."""
        stop_own(
            self.process,
            self.pidfile,
            lambda pid: pid_alive(pid, str(self.storage)),
            timeout,
            f"Alertmanager ({self.datadir})",
        )


def require_free_port(port: int, what: str) -> None:
    """ServiceError naming the holder when `port` is taken already."""
    if port_is_open(port):
        holder = port_holder(port)
        raise ServiceError(f"port {port} for {what} is already in use" + (f" by {holder}" if holder else ""))


def launch_daemon(
    args: list[str], log_path: Path, pidfile: Path, env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start `args` in its own session, output appended to `log_path`, its pid written to `pidfile`.

    Its own session and no inherited stdout: a caller capturing our output must not wait on it.
    """
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    pidfile.write_text(f"{process.pid}\n")
    return process


def stop_own(
    process: subprocess.Popen[bytes] | None, pidfile: Path, owns: Callable[[int], bool], timeout: float, what: str
) -> None:
    """Stop the process we started, or the one `pidfile` names if `owns` says it is ours (stop_pid); drop the pid file."""
    pid = process.pid if process is not None else read_pid(pidfile)
    if pid is not None and (process is not None or owns(pid)):
        stop_pid(pid, process, timeout, what)
    pidfile.unlink(missing_ok=True)


def stop_pid(pid: int, process: subprocess.Popen[bytes] | None, timeout: float, what: str) -> None:
    """SIGTERM to `pid`, SIGKILL after `timeout` s; ServiceError naming `what` if it is still there 5 s later.

    `process`: our own Popen of it (waited on, so no zombie is left behind), else /proc is polled.
    """

    def gone(seconds: float) -> bool:
        if process is not None and process.pid == pid:
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                return False
            return True
        return wait_gone(pid, seconds)

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if gone(timeout):
        return
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if not gone(5):
        raise ServiceError(f"{what} (pid {pid}) did not stop")


def pid_alive(pid: int, name: str | None = None) -> bool:
    """`pid` is a live (not zombie) process, and its command line mentions `name` if given."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    if stat.rpartition(")")[2].split()[0] in ("Z", "X"):
        return False
    return name is None or name in cmdline


def wait_gone(pid: int, timeout: float) -> bool:
    """Wait until `pid` has exited; False if it is still there after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def pids_using(folder: Path, name: str) -> list[int]:
    """Live processes whose command line mentions `name` and that hold a file open under `folder`.

    Finds what a crash left behind (e.g. nginx workers whose master was killed), which still
    holds its logs, and so proves it belongs to this state folder and not to someone else.
    """
    prefix = str(folder.resolve()) + os.sep
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid == os.getpid() or not pid_alive(pid, name):
            continue
        try:
            targets = [os.readlink(fd) for fd in (proc / "fd").iterdir()]
        except OSError:
            continue
        if any(target.startswith(prefix) for target in targets):
            found.append(pid)
    return found


def port_holder(port: int) -> str | None:
    """Which process listens on 127.0.0.1:`port` ("nginx pid 123"), from `ss`; None if unknown."""
    try:
        out = subprocess.run(["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    marker = 'users:(("'
    if marker not in out:
        return None
    name, _, rest = out.split(marker, 1)[1].partition('"')
    pid = rest.split("pid=", 1)[1].split(",", 1)[0] if "pid=" in rest else "?"
    return f"{name} (pid {pid})"


def read_pid(path: Path) -> int | None:
    """The integer in a pid file, or None."""
    return _read_pid(path)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None
