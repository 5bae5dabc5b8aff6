"""The local environment's data tier besides each primary PostgreSQL: PgBouncer, the streaming replica, Redis and Sentinel.

Per environment (issue 13; docs/data-tier.md):

    redis/<env>/{cache,carts,carts-replica,sentinel}/   the Redis servers and Sentinel (services/redis.py)
    postgres/<env>/pgbouncer/    PgBouncer in front of the primary, for the shop's backends
    postgres/<env>/replica/      a hot standby of the primary (environments with `replica_port`)
    secrets/<env>-redis-password, <env>-redis-admin-password, <env>-replication-password

PgBouncer and the replica live beside the primary's folders, where PostgreSQL's OS user can
reach them (PgBouncer switches to that user as root). Passwords are made once, as files.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from shop_ops.observability import logs
from shop_ops.services.db_logins import pooled_login_roles
from shop_ops.services.files import ensure_secret_file
from shop_ops.services.pgbouncer import PgBouncer
from shop_ops.services.processes import PostgresCluster, PostgresReplica, port_is_open
from shop_ops.services.redis import RedisPasswords, RedisTier
from shop_ops.settings import Settings

Step = Callable[[str], AbstractContextManager[None]]
Undo = Callable[[str, Callable[[], None]], None]
Stop = Callable[[str, Callable[[], bool], Callable[[], None]], None]


class DataTier:
    """The pooler, replica and Redis servers of every local environment, found through the state folder."""

    def __init__(self, settings: Settings, clusters: dict[str, PostgresCluster], container_gid: int) -> None:
        self.settings = settings
        self.clusters = clusters
        self.container_gid = container_gid
        data = settings.data
        self.environments = settings.local_environments()
        self.pgbouncers = {
            name: PgBouncer(
                settings.postgres_folder(name) / "pgbouncer",
                env.pgbouncer_port,
                env.postgres_port,
                env.database,
                pool_size=data.pgbouncer_pool_size,
                max_client_conn=data.pgbouncer_max_client_conn,
            )
            for name, env in self.environments.items()
        }
        self.replicas = {
            name: PostgresReplica(
                datadir=settings.postgres_folder(name) / "replica",
                port=env.replica_port,
                tcp_auth="scram-sha-256",
                primary=clusters[name],
                password_file=self.replication_password_file(name),
                slot=f"{name}_replica",
            )
            for name, env in self.environments.items()
            if env.replica_port is not None
        }
        self._redis: dict[str, RedisTier] = {}

    # ------------------------------------------------------------------ secrets and servers
    def replication_password_file(self, name: str) -> Path:
        return self.settings.state_path / "secrets" / f"{name}-replication-password"

    def ensure_secrets(self) -> None:
        """The environments' Redis passwords, made once: `shop`'s readable by the shop's containers, `admin`'s private."""
        for name in self.environments:
            ensure_secret_file(self.settings.redis_password_file(name), group=self.container_gid)
            ensure_secret_file(self.settings.redis_admin_password_file(name))

    def redis(self, name: str) -> RedisTier:
        """The Redis servers of environment `name` (their passwords must exist: `ensure_secrets`)."""
        if name not in self._redis:
            env, data = self.environments[name], self.settings.data
            passwords = RedisPasswords.from_files(
                self.settings.redis_password_file(name), self.settings.redis_admin_password_file(name)
            )
            self._redis[name] = RedisTier(
                environment=name,
                folder=self.settings.state_path / "redis" / name,
                passwords=passwords,
                cache_port=env.redis.cache_port,
                carts_port=env.redis.carts_port,
                carts_replica_port=env.redis.carts_replica_port,
                sentinel_port=env.redis.sentinel_port,
                cache_maxmemory_mb=data.cache_maxmemory_mb,
                carts_maxmemory_mb=data.carts_maxmemory_mb,
                down_after_ms=data.sentinel_down_after_ms,
                failover_timeout_ms=data.sentinel_failover_timeout_ms,
            )
        return self._redis[name]

    def _has_redis_secrets(self, name: str) -> bool:
        return (
            self.settings.redis_password_file(name).exists() and self.settings.redis_admin_password_file(name).exists()
        )

    # ------------------------------------------------------------------ lifecycle
    def up_redis(self, name: str, step: Step, say: Callable[[str], None], undo: Undo) -> None:
        """The cache, the cart store and its replica, Sentinel: whatever of them is not running."""
        tier = self.redis(name)
        parts = [tier.cache, *tier.cart_servers]
        if all(server.running() for server in parts) and tier.sentinel.running():
            say(f"redis ({name}): cache, carts on {tier.primary_port()}, replica, sentinel ... already running")
            return
        ports = (
            f"cache {tier.cache_port}, carts {tier.carts_port}+{tier.carts_replica_port}, sentinel {tier.sentinel_port}"
        )
        with step(f"starting redis ({name}): {ports}"):
            tier.start()
        undo(f"redis ({name})", tier.stop)

    def up_database(self, name: str, step: Step, say: Callable[[str], None], undo: Undo) -> None:
        """PgBouncer (its auth file synced with the shop role's password) and the replica, once the primary serves
        the shop's role and database."""
        cluster, bouncer = self.clusters[name], self.pgbouncers[name]
        bouncer.sync_auth(
            cluster, pooled_login_roles(cluster)
        )  # reloads a running PgBouncer: a changed password takes effect
        if bouncer.running():
            say(f"pgbouncer ({name}) on {bouncer.address} ... already running")
        else:
            with step(f"starting pgbouncer ({name}) on {bouncer.address} -> postgres on {cluster.port}"):
                bouncer.start()
            undo(f"pgbouncer ({name})", bouncer.stop)
        replica = self.replicas.get(name)
        if replica is None:
            return
        was_running = replica.running()
        with step(f"postgres replica ({name}) on 127.0.0.1:{replica.port}"):
            what = replica.create()
        say(f"  replica ({name}): {what}")
        if not was_running:
            undo(f"postgres replica ({name})", replica.stop)

    def down(self, stop: Stop) -> None:
        """Stop what runs: Redis (Sentinel first), PgBouncer, the replicas (their primaries stop after this)."""
        for name in self.environments:
            if self._has_redis_secrets(name):
                tier = self.redis(name)
                stop(f"sentinel ({name})", tier.sentinel.running, tier.sentinel.stop)
                for what, server in (("cache", tier.cache), ("carts", tier.carts), ("carts replica", tier.replica)):
                    stop(f"redis {what} ({name})", server.running, server.stop)
            stop(f"pgbouncer ({name})", self.pgbouncers[name].running, self.pgbouncers[name].stop)
        for name, replica in self.replicas.items():
            stop(f"postgres replica ({name})", replica.running, replica.stop)

    # ------------------------------------------------------------------ ports, logs, status
    def ports(self) -> list[tuple[int, str, Callable[[], bool]]]:
        """(port, service, is-it-ours-and-running) for the stack's port check."""
        plan: list[tuple[int, str, Callable[[], bool]]] = []
        for name, env in self.environments.items():
            plan.append((env.pgbouncer_port, f"pgbouncer ({name})", self.pgbouncers[name].running))
            if name in self.replicas:
                plan.append((self.replicas[name].port, f"postgres replica ({name})", self.replicas[name].running))
            if self._has_redis_secrets(name):
                tier = self.redis(name)
                plan += [
                    (tier.cache_port, f"redis cache ({name})", tier.cache.running),
                    (tier.carts_port, f"redis carts ({name})", tier.carts.running),
                    (tier.carts_replica_port, f"redis carts replica ({name})", tier.replica.running),
                    (tier.sentinel_port, f"sentinel ({name})", tier.sentinel.running),
                ]
            else:
                plan += [(port, f"redis ({name})", lambda: False) for port in env.redis.model_dump().values()]
        return plan

    def log_sources(self) -> Iterator[logs.LogSource]:
        """The data tier's logs for the central log store."""
        for name in self.environments:
            folder = self.settings.state_path / "redis" / name
            for part in ("cache", "carts", "carts-replica"):
                yield logs.LogSource(folder / part / "redis.log", f"redis-{part}", name, "redis")
            yield logs.LogSource(folder / "sentinel" / "sentinel.log", "sentinel", name, "redis")
            yield logs.LogSource(self.pgbouncers[name].log, "pgbouncer", name, "postgresql")
            if name in self.replicas:
                yield logs.LogSource(
                    self.replicas[name].datadir / "server.log", "postgresql-replica", name, "postgresql"
                )

    def status(self) -> dict[str, Any]:
        """What answers now (probed): groups `pgbouncer`, `replica`, `redis`, each with `up` and one entry per environment."""
        groups: dict[str, dict[str, Any]] = {"pgbouncer": {}, "replica": {}, "redis": {}}
        for name, env in self.environments.items():
            bouncer = self.pgbouncers[name]
            groups["pgbouncer"][name] = {
                "dsn": bouncer.dsn("shop"),
                "up": bouncer.running() and port_is_open(bouncer.port),
            }
            if name in self.replicas:
                replica = self.replicas[name]
                up = replica.running() and replica.ready()
                groups["replica"][name] = {
                    "dsn": replica.dsn(env.database, user="shop"),
                    "up": up,
                    "streaming": replica.streaming() if up else False,
                    "lag_seconds": replica.lag_seconds() if up else None,
                }
            if not self._has_redis_secrets(name):
                groups["redis"][name] = {"up": False, "url": "no passwords yet: run `shop-ops local up`"}
                continue
            tier = self.redis(name)
            probe = tier.status()
            groups["redis"][name] = {
                "url": f"{tier.cache_url()} (cache), sentinel {tier.sentinel.address} -> carts on {probe['sentinel_primary']}",
                "up": bool(probe["cache"]) and probe["sentinel_primary"] is not None
                and None not in (probe["carts"], probe["carts_replica"]),
                **probe,
            }  # fmt: skip
        return {
            key: {"up": all(entry["up"] for entry in entries.values()), **entries}
            for key, entries in groups.items()
            if entries
        }
