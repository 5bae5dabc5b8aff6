"""An environment's Redis servers: a cache that evicts, a cart store that never does, its replica and Sentinel.

Carts live 7 days and must never be evicted, while the cache should drop its least recently used
keys under pressure: no single eviction policy serves both, so each environment has two servers
(issue 13; docs/data-tier.md):

- the cache: `maxmemory-policy allkeys-lru`, no persistence (a restart only costs cache misses);
- the cart store: `noeviction` (at `maxmemory` it refuses writes with an OOM error instead of
  dropping carts), AOF with `appendfsync everysec`, and a replica (`replicaof`, authenticated as
  `admin`) that Sentinel promotes when the primary dies.

Every server and the Sentinel have the same ACL users, the default user off:
- `shop`, the backend: only the commands it sends and only its keys (SHOP_GRANTS below; the key
  names come from app/shop/catalog.py and app/shop/carts.py). On Sentinel it may only ask where the
  primary is.
- `admin`: replication, Sentinel's own connections, backups (`redis-cli --rdb`), exporters.

Configuration files (mode 0600, in each server's folder, never a password on a command line) are
written at each start; Redis and Sentinel rewrite them themselves (CONFIG REWRITE after a role
change, Sentinel's state). One machine runs one Sentinel (quorum 1); production runs three on
separate hosts (quorum 2), which this class does not start.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shop_ops.services.files import write_private
from shop_ops.services.processes import (
    RedisServer,
    ServiceError,
    pid_alive,
    read_pid,
    redis_word,
    require_free_port,
    stop_own,
)

# What the backend sends, per server (connection set-up: AUTH is always allowed; redis-py's
# CLIENT SETINFO is answered with an error it ignores). Keys: the cache's response keys
# (catalog:<version>:..., catalog:version, product:<id>) and the carts (cart:<32 hex>).
CACHE_GRANT = "~catalog:* ~product:* resetchannels -@all +ping +get +set +del +incr +incrby"
CARTS_GRANT = "~cart:* resetchannels -@all +ping +hset +hgetall +hdel +expire +del +multi +exec +discard"
# On Sentinel: where is the primary (redis-py's Sentinel asks SENTINEL MASTERS), and its replicas.
SENTINEL_GRANT = (
    "resetchannels -@all +ping +sentinel|masters +sentinel|get-master-addr-by-name +sentinel|slaves "
    "+sentinel|replicas +sentinel|sentinels"
)
ADMIN_GRANT = "~* &* +@all"


@dataclass(frozen=True, repr=False)
class RedisPasswords:
    """The passwords of an environment's two Redis users: `shop` (the backend) and `admin`."""

    shop: str
    admin: str

    @classmethod
    def from_files(cls, shop_file: Path, admin_file: Path) -> RedisPasswords:
        """Read both files (one password each, surrounding whitespace ignored)."""
        values = []
        for what, path in (("shop", shop_file), ("admin", admin_file)):
            try:
                value = path.read_text().strip()
            except OSError as exc:
                raise ServiceError(
                    f"the Redis password of user {what} cannot be read from {path} ({exc.strerror}): create the file"
                ) from None
            if not value or any(c.isspace() for c in value):
                raise ServiceError(f"{path} must hold the Redis password of user {what}: one word, no spaces")
            values.append(value)
        return cls(*values)


def acl_user(name: str, password: str, grant: str) -> str:
    """A `user` line: `name` on, with `password`, allowed exactly `grant`."""
    return f"user {name} on {redis_word('>' + password)} resetkeys {grant}"


def acl_users(passwords: RedisPasswords, shop_grant: str) -> list[str]:
    return [acl_user("shop", passwords.shop, shop_grant), acl_user("admin", passwords.admin, ADMIN_GRANT)]


def cache_server(folder: Path, port: int, passwords: RedisPasswords, maxmemory_mb: int) -> RedisServer:
    """The cache: evicts its least recently used keys at `maxmemory_mb`, keeps nothing on disk."""
    settings = {
        "maxmemory": f"{maxmemory_mb}mb",
        "maxmemory-policy": "allkeys-lru",
        "save": '""',
        "appendonly": "no",
    }
    return RedisServer(folder, port, settings=settings, users=acl_users(passwords, CACHE_GRANT))


def cart_server(
    folder: Path, port: int, passwords: RedisPasswords, maxmemory_mb: int, replica_of: int | None = None
) -> RedisServer:
    """A cart store: never evicts (writes fail with OOM at `maxmemory_mb`), AOF fsynced every second.

    `replica_of`: the primary's port; it replicates as `admin`. Both have the same settings, since
    either may be the primary after a failover.
    """
    settings = {
        "maxmemory": f"{maxmemory_mb}mb",
        "maxmemory-policy": "noeviction",
        "appendonly": "yes",
        "appendfsync": "everysec",
        "save": '""',
        "masteruser": "admin",
        "masterauth": redis_word(passwords.admin),
        "replica-read-only": "yes",
        # Full syncs (a replica joining, `redis-cli --rdb` backups) start at once, not after 5 s.
        "repl-diskless-sync-delay": "0",
    }
    if replica_of is not None:
        settings["replicaof"] = f"127.0.0.1 {replica_of}"
    return RedisServer(folder, port, settings=settings, users=acl_users(passwords, CARTS_GRANT))


def admin_client(port: int, passwords: RedisPasswords, timeout: float = 2) -> redis.Redis:
    """A synchronous client of the server (or Sentinel) on `port`, as `admin`."""
    return redis.Redis(
        host="127.0.0.1", port=port, username="admin", password=passwords.admin,
        socket_timeout=timeout, socket_connect_timeout=timeout, decode_responses=True, retry=Retry(NoBackoff(), 0),
    )  # fmt: skip


def role(port: int, passwords: RedisPasswords) -> str | None:
    """The role (master or slave) the server on `port` reports now; None when it does not answer."""
    try:
        with admin_client(port, passwords, timeout=1) as client:
            return str(client.execute_command("ROLE")[0])
    except redis.RedisError:
        return None


@dataclass
class SentinelServer:
    """Redis Sentinel (Debian `redis-sentinel`) on 127.0.0.1:`port`, watching the cart store `service`.

    Its configuration (`folder`/sentinel.conf, mode 0600) is written at each start, monitoring the
    given primary; Sentinel then rewrites the file with what it learns (replicas, epochs, a new
    primary). It authenticates to the servers as `admin`; clients authenticate to it as `shop`
    (may only ask where the primary is) or `admin`.
    """

    folder: Path
    port: int
    service: str
    primary_port: int
    passwords: RedisPasswords
    down_after_ms: int
    failover_timeout_ms: int
    quorum: int = 1
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def config_file(self) -> Path:
        return self.folder / "sentinel.conf"

    @property
    def pidfile(self) -> Path:
        return self.folder / "sentinel.pid"

    @property
    def log(self) -> Path:
        return self.folder / "sentinel.log"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def config_lines(self) -> list[str]:
        svc = self.service
        return [
            "# shop-ops: written at each start; Sentinel rewrites it with its state",
            "bind 127.0.0.1",
            f"port {self.port}",
            f"dir {redis_word(str(self.folder))}",
            f"pidfile {redis_word(str(self.pidfile))}",
            f"logfile {redis_word(str(self.log))}",
            "daemonize no",
            "sentinel resolve-hostnames no",
            "user default off",
            acl_user("shop", self.passwords.shop, SENTINEL_GRANT),
            acl_user("admin", self.passwords.admin, ADMIN_GRANT),
            # Other Sentinels (production runs three) talk to this one as admin.
            "sentinel sentinel-user admin",
            f"sentinel sentinel-pass {redis_word(self.passwords.admin)}",
            f"sentinel monitor {svc} 127.0.0.1 {self.primary_port} {self.quorum}",
            f"sentinel auth-user {svc} admin",
            f"sentinel auth-pass {svc} {redis_word(self.passwords.admin)}",
            f"sentinel down-after-milliseconds {svc} {self.down_after_ms}",
            f"sentinel failover-timeout {svc} {self.failover_timeout_ms}",
            f"sentinel parallel-syncs {svc} 1",
        ]

    def start(self, timeout: float = 10) -> None:
        binary = shutil.which("redis-sentinel")
        if binary is None:
            raise ServiceError("redis-sentinel not found: install Debian's redis-sentinel package (make install)")
        require_free_port(self.port, f"Sentinel of {self.service}")
        self.folder.mkdir(parents=True, exist_ok=True)
        self.folder.chmod(0o700)
        write_private(self.config_file, "\n".join(self.config_lines()) + "\n")
        # umask 077: Sentinel rewrites its file (new temp file, renamed) and must keep it private.
        self.process = subprocess.Popen(
            [binary, str(self.config_file)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True, umask=0o077,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.primary() is None:
            if self.process.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-1500:] if self.log.exists() else ""
                self.stop()
                raise ServiceError(f"Sentinel on port {self.port} did not start; see {self.log}: {tail}")
            time.sleep(0.05)

    def primary(self) -> int | None:
        """The port of the primary this Sentinel names now; None when it does not answer."""
        try:
            with admin_client(self.port, self.passwords, timeout=1) as client:
                address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        except redis.RedisError:
            return None
        return int(address[1]) if address else None

    def primary_state(self) -> dict[str, str]:
        """SENTINEL MASTER's fields for the service (flags, num-slaves, ...); empty when it does not answer."""
        try:
            with admin_client(self.port, self.passwords, timeout=1) as client:
                raw = client.execute_command("SENTINEL", "MASTER", self.service)
        except redis.RedisError:
            return {}
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return {str(raw[i]): str(raw[i + 1]) for i in range(0, len(raw) - 1, 2)}

    def running(self) -> bool:
        pid = self.process.pid if self.process is not None else read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "redis-sentinel")

    def stop(self, timeout: float = 10) -> None:
        stop_own(
            self.process, self.pidfile, lambda pid: pid_alive(pid, "redis-sentinel"), timeout,
            f"Sentinel of {self.service} ({self.folder})",
        )  # fmt: skip
        self.process = None


def _recorded_replicaof(config: Path) -> str | None:
    """The `replicaof` line's value in a server's configuration file; None when it has none."""
    for line in config.read_text().splitlines():
        name, _, value = line.strip().partition(" ")
        if name.lower() in ("replicaof", "slaveof"):
            return value.strip()
    return None


@dataclass
class RedisTier:
    """One environment's Redis in `folder`: cache/, carts/, carts-replica/ and sentinel/ (each mode 0700)."""

    environment: str
    folder: Path
    passwords: RedisPasswords
    cache_port: int
    carts_port: int
    carts_replica_port: int
    sentinel_port: int
    cache_maxmemory_mb: int
    carts_maxmemory_mb: int
    down_after_ms: int
    failover_timeout_ms: int

    def __post_init__(self) -> None:
        self.cache = cache_server(self.folder / "cache", self.cache_port, self.passwords, self.cache_maxmemory_mb)
        self.carts = cart_server(self.folder / "carts", self.carts_port, self.passwords, self.carts_maxmemory_mb)
        self.replica = cart_server(
            self.folder / "carts-replica", self.carts_replica_port, self.passwords, self.carts_maxmemory_mb,
            replica_of=self.carts_port,
        )  # fmt: skip
        self.sentinel = SentinelServer(
            self.folder / "sentinel", self.sentinel_port, self.service, self.carts_port, self.passwords,
            self.down_after_ms, self.failover_timeout_ms,
        )  # fmt: skip

    @property
    def service(self) -> str:
        """The name Sentinel monitors the cart store under (SHOP_CARTS_SENTINEL_SERVICE)."""
        return f"shop-carts-{self.environment}"

    @property
    def cart_servers(self) -> tuple[RedisServer, RedisServer]:
        return self.carts, self.replica

    def cache_url(self) -> str:
        """SHOP_REDIS_URL: the cache as user `shop` (the password comes from SHOP_REDIS_PASSWORD_FILE)."""
        return f"redis://shop@127.0.0.1:{self.cache_port}/0"

    def carts_url(self) -> str:
        """SHOP_CARTS_REDIS_URL without Sentinel: the cart store's first server as user `shop`."""
        return f"redis://shop@127.0.0.1:{self.carts_port}/0"

    def primary_port(self) -> int:
        """The cart server that is the primary now: as Sentinel names it, else as the servers say, else as
        their configuration files last recorded (Redis rewrites them when Sentinel changes a role)."""
        if self.sentinel.running():
            named = self.sentinel.primary()
            if named is not None:
                return named
        for server in self.cart_servers:
            if role(server.port, self.passwords) == "master":
                return server.port
        return self.recorded_primary()

    def recorded_primary(self) -> int:
        """The primary as the cart servers' files record it: the newest file without `replicaof`."""
        candidates = [
            (server.config_file.stat().st_mtime, server.port)
            for server in self.cart_servers
            if server.config_file.exists() and _recorded_replicaof(server.config_file) is None
        ]
        return max(candidates)[1] if candidates else self.carts_port

    def start(self, timeout: float = 20) -> None:
        """Start what is not running: the cache, the cart servers (the primary first, the other as its
        replica), then Sentinel watching the primary; wait until the replica is in sync.

        A cart server that was down (a crash, a restart) comes back as a replica of the primary now:
        a killed primary rejoins as a replica of the one Sentinel promoted.
        """
        if not self.cache.running():
            self.cache.pidfile.unlink(missing_ok=True)
            self.cache.start()
        primary = self.primary_port()
        for server in sorted(self.cart_servers, key=lambda s: s.port != primary):
            if server.running():
                continue
            server.settings.pop("replicaof", None)
            if server.port != primary:
                server.settings["replicaof"] = f"127.0.0.1 {primary}"
            server.pidfile.unlink(missing_ok=True)
            server.start()
        self.wait_replicated(timeout)
        if not self.sentinel.running():
            self.sentinel.primary_port = primary
            self.sentinel.start()

    def wait_replicated(self, timeout: float = 20) -> None:
        """Until the primary reports a replica online (ServiceError naming the replica's log otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            primary = self.primary_port()
            try:
                with admin_client(primary, self.passwords, timeout=1) as client:
                    info = client.info("replication")
                if info.get("role") == "master" and int(info.get("connected_slaves", 0)) >= 1:
                    state = str(info.get("slave0", {}).get("state", "")) if isinstance(info.get("slave0"), dict) else ""
                    if state in ("", "online"):
                        return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"the cart store's replica of {self.environment} did not catch up with the primary on port "
                    f"{primary} within {timeout:.0f}s; see {self.replica.log} and {self.carts.log}"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Sentinel first (no failover while the servers go down), then the servers."""
        self.sentinel.stop()
        for server in (*self.cart_servers, self.cache):
            server.stop()

    def status(self) -> dict[str, object]:
        """What answers now: each server's role (None: down), the primary Sentinel names."""
        return {
            "cache": self.cache.ping(),
            "carts": role(self.carts_port, self.passwords),
            "carts_replica": role(self.carts_replica_port, self.passwords),
            "sentinel_primary": self.sentinel.primary(),
        }
