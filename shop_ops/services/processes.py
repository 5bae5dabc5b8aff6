"""Real PostgreSQL clusters, Redis, Prometheus and Alertmanager servers as child processes on 127.0.0.1, state in a folder.

Plain functions and classes used by the local environment and by the test fixtures alike.
"""

from __future__ import annotations

import os
import random
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

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
        # No inherited stdout/stderr: a caller capturing our output must not wait on the server.
        self.process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not port_is_open(self.port):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise ServiceError(f"Redis on port {self.port} did not start; see {self.datadir / 'redis.log'}")
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

    def stop(self, timeout: float = 10) -> None:
        pid = self.process.pid if self.process else _read_pid(self.pidfile)
        if pid is None or (self.process is None and not pid_alive(pid, "redis-server")):
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
