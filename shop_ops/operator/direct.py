"""The commands that act directly (`db check`, `cache clear`, `restart`, `logs collect`), wired to the pipeline.

Each builds what it acts on with shop_ops.definitions' own helpers from the profile's settings
(`load_settings`: config/<profile>.yaml, SHOP_OPS_CONFIG, SHOP_OPS_STATE, as the code location reads
them), so a command and a run of the pipeline reach the same database, Redis, routers and log store; then
it calls the plain function of its module. Importing the code location takes a few seconds: done here,
only for these commands. They work on the local profile, whose services run on this machine.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from shop_ops.operator import cache, database, log_archive, restart
from shop_ops.operator.dagster_api import OperatorError
from shop_ops.settings import Settings, SettingsError, load_settings

AWS_FIX = {
    "db": "RDS is reached from inside the VPC (an ECS task, the RDS console)",
    "cache": "ElastiCache is reached from inside the VPC (an ECS task)",
    "restart": "force a new deployment of the ECS service (aws ecs update-service --force-new-deployment)",
    "logs": "read the ECS services' CloudWatch log groups (aws logs tail /shop/<env>/backend --since 1h)",
}


def _local(command: str) -> tuple[Settings, ModuleType]:
    """The local profile's settings and the code location's definitions module (its resource builders)."""
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise OperatorError(str(exc)) from None
    if settings.profile != "local":
        raise OperatorError(
            f"`shop-ops {command}` acts on the local profile's services; this is the {settings.profile} profile: "
            f"{AWS_FIX[command]}"
        )
    from shop_ops import definitions  # the resource builders; loads the code location (seconds)

    return settings, definitions


def db_check(environment: str) -> database.DatabaseReport:
    settings, definitions = _local("db")
    target = definitions.postgres_resource(settings).target(environment)
    logins = definitions.shop_wiring(settings, environment).database_logins
    bouncer = logins.logins(environment).pgbouncer if logins is not None else None
    return database.check_database(environment, target, bouncer)


def cache_clear(environment: str, scope: cache.Scope) -> cache.CacheCleared:
    from shop_ops.services.processes import ServiceError
    from shop_ops.services.redis import RedisPasswords, admin_client

    settings, definitions = _local("cache")
    wiring = definitions.shop_wiring(settings, environment)
    url = urlsplit(wiring.redis_url)  # the cache the shop's containers get (SHOP_REDIS_URL)
    db = int((url.path or "/0").lstrip("/") or 0)
    if db != 0 or url.port is None:
        raise OperatorError(f"the {environment} cache {wiring.redis_url} is not a db 0 on 127.0.0.1: clear it by hand")
    try:
        passwords = RedisPasswords.from_files(
            settings.redis_password_file(environment), settings.redis_admin_password_file(environment)
        )
    except ServiceError as exc:
        raise OperatorError(f"{exc} (`shop-ops local up` makes it)") from None
    if wiring.carts_sentinels:
        where = f"the cart store through Sentinel {wiring.carts_sentinels} ({wiring.carts_sentinel_service})"
    else:
        where = "cart:* keys in this database, kept"
    with admin_client(url.port, passwords) as client:
        return cache.clear(
            client, environment, f"127.0.0.1:{url.port}/{db}", scope, bool(wiring.carts_sentinels), where
        )


def restart_service(environment: str, service: str, log: Callable[[str], None]) -> dict[str, Any]:
    from shop_ops.release.targets import BlueGreenTarget

    settings, definitions = _local("restart")
    target = definitions.resources(settings)["release_target"]
    if not isinstance(target, BlueGreenTarget):
        raise OperatorError(f"restart needs blue/green slots; {AWS_FIX['restart']}")
    if service == "router":
        return restart.reload_router(environment, target.router.router(environment))
    return restart.restart_shop(environment, target.strategy(environment, log))


def logs_collect(
    environment: str, since: str, until: str, output: str | None, max_lines: int, now: datetime
) -> dict[str, Any]:
    settings, definitions = _local("logs")
    store = definitions.error_log(settings)  # the log alerts' reader of the central store
    start, end = log_archive.parse_moment(since, now), log_archive.parse_moment(until, now)
    path = Path(output) if output else log_archive.default_output(environment, start, end)
    return log_archive.collect(store.dsn, environment, start, end, path, max_lines)
