"""The shop's app containers in the local environment: one-off commands and the slot services.

Built on `DockerEngine` (shop_ops/resources/containers.py): host networking, a stop timeout,
labels that let `down` find exactly this stack's containers, and the database and Redis passwords,
the admin token and the payment webhook secret as read-only file mounts (never environment values). Every container is
confined (`AppEnvironment.hardening`): read-only root filesystem with a tmpfs on /tmp, no
capabilities, no-new-privileges, memory and CPU limits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from shop_ops.resources.containers import (
    ContainerError,
    DockerEngine,
    Hardening,
    ServiceContainer,
    container_log_path,
)

LABEL_STACK = "io.shop-ops.stack"
LABEL_ENVIRONMENT = "io.shop-ops.environment"
LABEL_SLOT = "io.shop-ops.slot"
LABEL_ROLE = "io.shop-ops.role"
LABEL_PORT = "io.shop-ops.port"
PASSWORD_MOUNT = "/run/secrets/shop-db-password"
ADMIN_TOKEN_MOUNT = "/run/secrets/shop-admin-token"
PAYMENT_WEBHOOK_SECRET_MOUNT = "/run/secrets/shop-payment-webhook-secret"
REDIS_PASSWORD_MOUNT = "/run/secrets/shop-redis-password"
STOP_TIMEOUT = 10
CONTAINER_UID = 10001  # the shop images run as this UID/GID: the secret files they mount are of this group
CONTAINER_LOG_MAX_SIZE = "20m"  # podman truncates a container's log file past this


def stack_id(state: Path) -> str:
    """Short id of a state folder; the app containers of the environment kept there carry it in names and labels."""
    return hashlib.sha1(str(state.resolve()).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class AppEnvironment:
    """What the shop's containers in one environment connect to, and how they are labelled."""

    stack: str
    name: str
    database_url: str  # postgresql+asyncpg://shop@127.0.0.1:PORT/shop, no password; one-off commands use it
    password_file: Path
    redis_url: str  # the cache, e.g. redis://shop@127.0.0.1:PORT/0
    admin_token_file: Path  # the bearer token of the admin API (load tests restock and purge through it)
    workers: int = 1
    # The slot backends' connections go through PgBouncer here (None: to database_url). Migrations,
    # the seed and other one-off commands keep direct sessions.
    pooled_database_url: str | None = None
    # A streaming replica for reporting reads (the admin statistics); same password.
    replica_database_url: str | None = None
    # The Redis user's password (cache, cart store, Sentinel), mounted like the database password.
    redis_password_file: Path | None = None
    # The cart store through Sentinel ("host:port,..." and the monitored service); None: carts use redis_url.
    carts_sentinels: str | None = None
    carts_sentinel_service: str | None = None
    # The backend's pools per worker (None: the backend's defaults).
    database_pool_size: int | None = None
    redis_max_connections: int | None = None
    # The backend's bounds on a hung dependency, in seconds (None: the backend's defaults).
    redis_timeout_seconds: float | None = None
    database_timeout_seconds: float | None = None
    # The containers' logs go to <log_folder>/<environment>/<role>_<slot>_<release>.log (the central log
    # collector reads them there); None: the engine keeps them in the container's own folder.
    log_folder: Path | None = None
    # Each container's bounds (SecuritySettings.container_memory_mb / container_cpus); None: unbounded.
    memory_mb: int | None = 512
    cpus: float | None = 1.0
    # The backend's request-body limit (SHOP_MAX_REQUEST_BYTES; None: the backend's default, 1 MiB) and
    # the browser origins its CORS answers allow (SHOP_CORS_ORIGINS; empty: no CORS headers at all).
    max_request_bytes: int | None = None
    cors_origins: tuple[str, ...] = ()
    # The payment provider's webhook signing secret (SHOP_PAYMENT_WEBHOOK_SECRET_FILE), mounted like the admin
    # token; None: the backend answers the payment callback 503 webhook_not_configured.
    payment_webhook_secret_file: Path | None = None

    @property
    def hardening(self) -> Hardening:
        """How every container of this environment is confined (read-only root, tmpfs /tmp, no capabilities)."""
        return Hardening(memory_mb=self.memory_mb, cpus=self.cpus)

    # The login role the serving backends use instead of database_url's (one of two alternating roles,
    # shop_ops/services/db_logins.py) and its password file; None: database_url's role with password_file.
    # One-off commands (migrations, the seed) keep database_url's role and password_file.
    serving_login: str | None = None
    serving_password_file: Path | None = None

    def log_options(self, role: str, slot: str, image: str) -> dict[str, Any]:
        """start_service's log arguments for one container of `slot` running `image`."""
        if self.log_folder is None:
            return {}
        path = container_log_path(self.log_folder, self.name, role, slot, release_label(image))
        return {"log_path": path, "log_max_size": CONTAINER_LOG_MAX_SIZE}

    def backend_env(self, port: int | None = None) -> dict[str, str]:
        """The backend's environment: a serving backend on `port` (through the pooler, if any), or a
        one-off command (`port` None: a direct database session, as migrations need)."""
        serving = port is not None
        database_url = (self.pooled_database_url if serving else None) or self.database_url
        replica_url = self.replica_database_url if serving else None
        if serving and self.serving_login:
            database_url = _with_user(database_url, self.serving_login)
            replica_url = _with_user(replica_url, self.serving_login) if replica_url else None
        optional = {
            "SHOP_PORT": str(port) if serving else None,
            "SHOP_DATABASE_URL": database_url,
            "SHOP_DATABASE_REPLICA_URL": replica_url,
            "SHOP_REDIS_PASSWORD_FILE": REDIS_PASSWORD_MOUNT if self.redis_password_file else None,
            "SHOP_PAYMENT_WEBHOOK_SECRET_FILE": (
                PAYMENT_WEBHOOK_SECRET_MOUNT if self.payment_webhook_secret_file else None
            ),
            "SHOP_CARTS_SENTINELS": self.carts_sentinels,
            "SHOP_CARTS_SENTINEL_SERVICE": self.carts_sentinel_service if self.carts_sentinels else None,
            "SHOP_DATABASE_POOL_SIZE": str(self.database_pool_size) if self.database_pool_size else None,
            "SHOP_REDIS_MAX_CONNECTIONS": str(self.redis_max_connections) if self.redis_max_connections else None,
            "SHOP_REDIS_TIMEOUT_SECONDS": f"{self.redis_timeout_seconds:g}" if self.redis_timeout_seconds else None,
            "SHOP_DATABASE_TIMEOUT_SECONDS": (
                f"{self.database_timeout_seconds:g}" if self.database_timeout_seconds else None
            ),
            "SHOP_MAX_REQUEST_BYTES": str(self.max_request_bytes) if self.max_request_bytes else None,
            "SHOP_CORS_ORIGINS": ",".join(self.cors_origins) if self.cors_origins and serving else None,
        }
        return {
            "SHOP_DATABASE_PASSWORD_FILE": PASSWORD_MOUNT,
            "SHOP_ADMIN_TOKEN_FILE": ADMIN_TOKEN_MOUNT,
            "SHOP_REDIS_URL": self.redis_url,
            "SHOP_HOST": "127.0.0.1",
            "SHOP_WORKERS": str(self.workers),
            **{name: value for name, value in optional.items() if value is not None},
        }

    @property
    def mounts(self) -> dict[str | Path, str]:
        """A one-off command's files (the database role's password)."""
        return self.backend_mounts(serving=False)

    def backend_mounts(self, serving: bool) -> dict[str | Path, str]:
        """The backend's read-only files; a serving backend gets its login role's password, not the owner's."""
        password = (self.serving_password_file if serving else None) or self.password_file
        mounts: dict[str | Path, str] = {password: PASSWORD_MOUNT, self.admin_token_file: ADMIN_TOKEN_MOUNT}
        if self.redis_password_file is not None:
            mounts[self.redis_password_file] = REDIS_PASSWORD_MOUNT
        if self.payment_webhook_secret_file is not None:
            mounts[self.payment_webhook_secret_file] = PAYMENT_WEBHOOK_SECRET_MOUNT
        return mounts

    def labels(self, **extra: str) -> dict[str, str]:
        return {LABEL_STACK: self.stack, LABEL_ENVIRONMENT: self.name, **extra}


def _with_user(url: str, user: str) -> str:
    """`url` (scheme://user@host:port/db, no password) with another user."""
    scheme, sep, rest = url.partition("://")
    _, at, location = rest.rpartition("@")
    return f"{scheme}{sep}{quote(user)}@{location if at else rest}"


def service_name(env: AppEnvironment, slot: str, role: str) -> str:
    return f"shop-ops-{env.stack}-{env.name}-{slot}-{role}"


def run_once(engine: DockerEngine, image: str, command: list[str], env: AppEnvironment) -> str:
    """Run `command` in a one-off backend container; its stdout, or ContainerError with the log's end."""
    result = engine.run_once(
        image, command, env=env.backend_env(), mounts=env.mounts, timeout=600, labels=env.labels(),
        hardening=env.hardening,
    )  # fmt: skip
    if not result.ok:
        raise ContainerError(f"{' '.join(command)} in {image} exited {result.exit_code}:\n{result.logs[-2000:]}")
    return result.stdout


def release_label(image: str) -> str:
    """A short name of the release an image reference is: its tag, or `sha256-<12 hex>` of a pinned digest."""
    name, _, digest = image.partition("@")
    if digest:
        return digest.replace(":", "-")[:19]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else "latest"


def start_slot(
    engine: DockerEngine, env: AppEnvironment, slot: str, images: dict[str, str], backend_port: int,
    frontend_port: int,
) -> None:  # fmt: skip
    """Start the backend and storefront containers of `slot` (replacing stopped ones of the same name)."""
    engine.start_service(
        service_name(env, slot, "backend"),
        images["backend"],
        env=env.backend_env(backend_port),
        labels=env.labels(**{LABEL_SLOT: slot, LABEL_ROLE: "backend", LABEL_PORT: str(backend_port)}),
        stop_timeout=STOP_TIMEOUT,
        mounts=env.backend_mounts(serving=True),
        replace=True,
        hardening=env.hardening,
        **env.log_options("backend", slot, images["backend"]),
    )
    engine.start_service(
        service_name(env, slot, "frontend"),
        images["frontend"],
        env={
            "LISTEN_HOST": "127.0.0.1",
            "LISTEN_PORT": str(frontend_port),
            "BACKEND_URL": f"http://127.0.0.1:{backend_port}",
            "NGINX_WORKER_PROCESSES": "1",
            "NGINX_ACCESS_LOG": "off",
        },
        labels=env.labels(**{LABEL_SLOT: slot, LABEL_ROLE: "frontend", LABEL_PORT: str(frontend_port)}),
        stop_timeout=STOP_TIMEOUT,
        replace=True,
        hardening=env.hardening,
        **env.log_options("frontend", slot, images["frontend"]),
    )


def wait_ready(engine: DockerEngine, names: Iterable[str], urls: Iterable[str], timeout: float = 90) -> None:
    """Poll each URL until it answers 200 while the containers keep running (`DockerEngine.wait_answering`)."""
    engine.wait_answering(list(names), list(urls), timeout)


def stack_containers(engine: DockerEngine, stack: str) -> list[ServiceContainer]:
    """Every container (running or not) labelled with this stack."""
    return engine.list_services(labels={LABEL_STACK: stack}, include_stopped=True)


def remove_stack_containers(engine: DockerEngine, stack: str) -> list[str]:
    """Stop (within the stop timeout) and remove this stack's containers; their names."""
    names = []
    for container in stack_containers(engine, stack):
        engine.stop_service(container.id, timeout=STOP_TIMEOUT)
        names.append(container.name)
    return names
