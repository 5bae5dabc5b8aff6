"""What a local environment's shop containers connect to: PgBouncer for serving, direct sessions for
one-off commands, the replica for reports, the Redis cache and the cart store's Sentinel, passwords as files."""

from __future__ import annotations

from pathlib import Path

import pytest

from shop.settings import load_settings as load_shop_settings
from shop_ops.definitions import registry_resource, release_target
from shop_ops.release import apps
from shop_ops.resources.ledger import LedgerResource
from shop_ops.settings import ROOT, load_settings

LOCAL = ROOT / "config" / "local.yaml"


@pytest.fixture
def production(tmp_path: Path) -> apps.AppEnvironment:
    settings = load_settings(LOCAL)
    target = release_target(settings, registry_resource(settings), LedgerResource(state_dir=str(tmp_path)))
    return target.shops["production"].app_environment(
        stack="s", name="production", database_url="postgresql+asyncpg://shop@127.0.0.1:55433/shop",
        password_file=tmp_path / "db-password", admin_token_file=tmp_path / "token", log_folder=None,
    )  # fmt: skip


def test_serving_backends_go_through_pgbouncer_and_one_off_commands_do_not(production: apps.AppEnvironment):
    env = load_settings(LOCAL).local_environments()["production"]
    serving, one_off = production.backend_env(18201), production.backend_env()
    # Serving: the active login role once a local stack made them (rotation's shop_a/shop_b), else the owner.
    login = production.serving_login or "shop"
    assert serving["SHOP_DATABASE_URL"] == f"postgresql+asyncpg://{login}@127.0.0.1:{env.pgbouncer_port}/shop"
    # Migrations and the seed: a direct session (advisory locks, DDL, no statement timeout through a pool).
    assert one_off["SHOP_DATABASE_URL"] == f"postgresql+asyncpg://shop@127.0.0.1:{env.postgres_port}/shop"
    assert serving["SHOP_DATABASE_REPLICA_URL"] == f"postgresql+asyncpg://{login}@127.0.0.1:{env.replica_port}/shop"
    assert "SHOP_DATABASE_REPLICA_URL" not in one_off


def test_the_cache_and_the_cart_store_are_the_environments_own_with_the_password_mounted(
    production: apps.AppEnvironment, tmp_path: Path
):
    settings = load_settings(LOCAL)
    ports = settings.local_environments()["production"].redis
    serving = production.backend_env(18201)
    assert serving["SHOP_REDIS_URL"] == f"redis://shop@127.0.0.1:{ports.cache_port}/0"
    assert serving["SHOP_CARTS_SENTINELS"] == f"127.0.0.1:{ports.sentinel_port}"
    assert serving["SHOP_CARTS_SENTINEL_SERVICE"] == "shop-carts-production"
    assert production.mounts[settings.redis_password_file("production")] == apps.REDIS_PASSWORD_MOUNT
    assert serving["SHOP_REDIS_PASSWORD_FILE"] == apps.REDIS_PASSWORD_MOUNT
    # The staging shop never reaches production's servers.
    staging = settings.local_environments()["staging"].redis
    assert not {staging.cache_port, staging.carts_port, staging.sentinel_port} & set(ports.model_dump().values())
    # What the backend reads once the files are mounted where the variables point.
    (tmp_path / "redis-password").write_text("r-secret-9\n")
    mounted = {"SHOP_REDIS_PASSWORD_FILE": str(tmp_path / "redis-password"), "SHOP_DATABASE_PASSWORD_FILE": ""}
    inside = {**serving, **mounted, "SHOP_ADMIN_TOKEN_FILE": ""}
    shop = load_shop_settings(inside)
    assert shop.redis_password is not None and shop.redis_password.get_secret_value() == "r-secret-9"
    assert shop.sentinel_addresses() == [("127.0.0.1", ports.sentinel_port)]
    assert shop.database_pool_size == settings.data.database_pool_size
    assert shop.redis_timeout_seconds * 1000 == settings.data.redis_timeout_ms
    assert shop.database_timeout_seconds * 1000 == settings.data.database_timeout_ms
    assert "r-secret-9" not in str(serving)
