"""Backend settings from SHOP_* environment variables, validated once at start."""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

SECRET_FIELDS = ("database_password", "redis_password", "admin_token", "payment_webhook_secret")
# A payment webhook signing secret shorter than this is a mistake (a truncated file, a placeholder).
MIN_WEBHOOK_SECRET_LENGTH = 16


class SettingsError(Exception):
    """A setting is missing or malformed; the message names the variable and the fix."""


class Settings(BaseSettings):
    """Everything the backend reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="SHOP_", extra="ignore")

    database_url: str = Field(
        description="SQLAlchemy URL without the password, e.g. postgresql+asyncpg://shop@127.0.0.1:5432/shop"
    )
    database_password: SecretStr | None = None
    # The login user instead of the URL's (both URLs): on aws the ECS task takes it from the app secret's
    # `username`, which AWS's alternating-users rotation switches between two users.
    database_user: str | None = Field(default=None, min_length=1, max_length=63)
    database_pool_size: int = Field(default=10, ge=1, le=200)
    # What is between the backend and PostgreSQL. `pgbouncer` (transaction pooling; safe direct too):
    # no statement caches, unnamed statements. `none` (a direct connection only): asyncpg's and
    # SQLAlchemy's statement caches (shop/db.py; bench/README.md has what each costs).
    database_pooler: Literal["pgbouncer", "none"] = "pgbouncer"
    # Reporting reads (admin statistics) go here when set: a streaming replica of the database.
    database_replica_url: str | None = Field(default=None, description="like SHOP_DATABASE_URL, same password")
    redis_url: str = Field(description="the cache, e.g. redis://shop@127.0.0.1:6379/0")
    # The same password for the cache, the cart store and Sentinel (the URLs' user, e.g. `shop`).
    redis_password: SecretStr | None = None
    # The cart store (never evicts): this URL, or the primary that Sentinel names; default: the cache's URL.
    carts_redis_url: str | None = Field(default=None, description="e.g. redis://shop@127.0.0.1:6380/0")
    carts_sentinels: str | None = Field(default=None, description="host:port[,host:port...] of Sentinels")
    carts_sentinel_service: str = "shop-carts"
    # Through Sentinel: how long a cart command keeps retrying a refused or reset connection (a failover
    # under way: the primary died, the replica is being promoted) before the request fails with 503.
    redis_failover_wait_seconds: float = Field(default=10.0, ge=0, le=120)
    redis_max_connections: int = Field(default=50, ge=1, le=10_000)
    # Client-side bounds, so a hung server (no answer, no error) costs a request this long, not forever:
    # Redis: connect, each command, and the wait for a pooled connection.
    redis_timeout_seconds: float = Field(default=1.0, gt=0, le=60)
    # PostgreSQL: connect, the wait for a pooled connection, and each statement (cut off at half of it,
    # the other half for cancelling it: shop/db.py database_timeouts). The role's statement_timeout is
    # the server's own limit; this one also holds when the server does not answer.
    database_timeout_seconds: float = Field(default=2.0, gt=0, le=300)
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    workers: int = Field(default=2, ge=1, le=64)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    access_log: bool = True
    cache_ttl_seconds: float = Field(default=30.0, gt=0, le=3600)
    local_cache_ttl_seconds: float = Field(default=1.0, ge=0, le=60)
    cart_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60)
    admin_token: SecretStr | None = None
    # The payment provider's webhook signing secret (POST /api/payments/webhook checks the HMAC with it).
    # Not set: the callback answers 503 webhook_not_configured, naming this variable.
    payment_webhook_secret: SecretStr | None = None
    # The largest request body accepted: a larger one is answered 413 request_too_large before the
    # routes read it, whether it announces its length or comes chunked.
    max_request_bytes: int = Field(default=1_048_576, ge=1024, le=64 * 1_048_576)
    # Browser origins allowed to call the API from pages of another origin, comma-separated
    # (e.g. "https://shop.example,https://admin.shop.example"). Empty (the default): no CORS headers at
    # all, so browsers allow only pages of the API's own origin (the storefront is served from it).
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()  # NoDecode: a comma list, not JSON
    version: str = "0.0.0-dev"
    git_commit: str = "unknown"
    # SHOP_ENV: `dev` (compose's .env.dev.example) accepts placeholder secrets; anything else refuses them at start.
    env: Literal["dev", "staging", "production"] = "production"

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError("is not a URL like postgresql+asyncpg://shop@127.0.0.1:5432/shop") from None
        if url.get_backend_name() != "postgresql":
            raise ValueError("must start with postgresql+asyncpg:// (or postgresql://)")
        if url.password is not None:
            raise ValueError("must not contain a password: set SHOP_DATABASE_PASSWORD or SHOP_DATABASE_PASSWORD_FILE")
        if not url.database:
            raise ValueError("names no database: end it with /DBNAME")
        return url.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)

    @field_validator("payment_webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value().strip()) < MIN_WEBHOOK_SECRET_LENGTH:
            raise ValueError(
                f"is shorter than {MIN_WEBHOOK_SECRET_LENGTH} characters: use the provider's signing secret "
                "(or `openssl rand -hex 32` for a test provider)"
            )
        return value

    @field_validator("database_replica_url")
    @classmethod
    def _database_replica_url(cls, value: str | None) -> str | None:
        return None if value is None else cls._database_url(value)

    @field_validator("redis_url", "carts_redis_url")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("carts_sentinels")
    @classmethod
    def _sentinels(cls, value: str | None) -> str | None:
        if value is None:
            return None
        for address in value.split(","):
            host, _, port = address.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{address!r} is not host:port; list Sentinels as host:port,host:port")
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not isinstance(value, list | tuple):
            return value
        for origin in value:
            parts = urlsplit(str(origin))
            if (
                parts.scheme not in ("http", "https")
                or not parts.hostname
                or f"{parts.scheme}://{parts.netloc}" != origin
                or "@" in parts.netloc
            ):
                raise ValueError(
                    f"{origin!r} is not an origin: list scheme://host[:port] entries without path or wildcard, "
                    "comma-separated (e.g. https://shop.example)"
                )
        return tuple(value)

    def sentinel_addresses(self) -> list[tuple[str, int]]:
        """The Sentinels of the cart store as (host, port); empty when carts use a plain URL."""
        if not self.carts_sentinels:
            return []
        pairs = (a.strip().rpartition(":") for a in self.carts_sentinels.split(","))
        return [(host, int(port)) for host, _, port in pairs]


def _read_secret_files(environ: dict[str, str]) -> dict[str, str]:
    """Map SHOP_X_FILE=path to SHOP_X=<file contents> for the secret fields."""
    values: dict[str, str] = {}
    for name in SECRET_FIELDS:
        var = f"SHOP_{name.upper()}_FILE"
        path = environ.get(var)
        if not path:
            continue
        try:
            values[name] = Path(path).read_text().strip()
        except OSError as exc:
            raise SettingsError(f"{var}: cannot read {path} ({exc.strerror}); point it at a readable file") from None
    return values


# Placeholders and published defaults (.env.*.example): never a secret outside SHOP_ENV=dev. shop_ops refuses the
# same in its own inputs (shop_ops/services/redaction.py); the two packages share no code.
_PLACEHOLDER = re.compile(r"change[_ -]?me|replace[_ -]?me|^<[^>]*>$", re.IGNORECASE)
KNOWN_DEFAULT_SECRETS = frozenset({"shop-dev-only"})


def _refuse_placeholders(settings: Settings, from_files: dict[str, str]) -> None:
    """SettingsError naming the first secret variable that holds a placeholder (unless SHOP_ENV=dev)."""
    if settings.env == "dev":
        return
    for name in SECRET_FIELDS:
        secret = getattr(settings, name)
        value = secret.get_secret_value().strip() if secret is not None else ""
        if value and (_PLACEHOLDER.search(value) or value in KNOWN_DEFAULT_SECRETS):
            var = f"SHOP_{name.upper()}" + ("_FILE" if name in from_files else "")
            verb = "holds" if name in from_files else "is"
            raise SettingsError(f'{var} {verb} a placeholder ("{value}"): set a real secret (see docs/security.md)')


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Validate the environment; raise SettingsError naming the first bad variable (placeholder secrets included)."""
    env = dict(os.environ if environ is None else environ)
    from_files = _read_secret_files(env)
    shop_env = {k: v for k, v in env.items() if k.startswith("SHOP_") and not k.endswith("_FILE")}
    try:
        # _env_prefix handling: pass values explicitly so tests can use a dict environment
        kwargs = {k[5:].lower(): v for k, v in shop_env.items()}
        kwargs.update(from_files)
        settings = Settings.model_validate(kwargs)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        var = f"SHOP_{field.upper()}"
        if err["type"] == "missing":
            raise SettingsError(f"{var} is not set; set it (see .env.example)") from None
        msg = err["msg"].removeprefix("Value error, ")
        raise SettingsError(f"{var} is invalid: {msg}") from None
    _refuse_placeholders(settings, from_files)
    return settings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, validated on first use."""
    return load_settings()
