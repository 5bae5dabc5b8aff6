"""Which database login a local environment's containers use: the serving login role (read at call time) for
slot backends, the owner `shop` for one-off commands; no programs started."""

from __future__ import annotations

from pathlib import Path

import pytest

from shop_ops.release import apps
from shop_ops.release.flow import DeployRefused
from shop_ops.release.targets import DatabaseLoginsConfig, ShopWiring
from shop_ops.services.db_logins import LoginFiles, verifier_matches
from shop_ops.services.processes import ServiceError, scram_verifier

POOLED = "postgresql+asyncpg://shop@127.0.0.1:16432/shop"
REPLICA = "postgresql+asyncpg://shop@127.0.0.1:15433/shop"
DIRECT = "postgresql+asyncpg://shop@127.0.0.1:15432/shop"


def app_env(wiring: ShopWiring, tmp_path: Path, login: str | None = None) -> apps.AppEnvironment:
    return wiring.app_environment(
        stack="s", name="staging", database_url=DIRECT, password_file=tmp_path / "staging-db-password",
        admin_token_file=tmp_path / "token", log_folder=None, login=login,
    )  # fmt: skip


def test_slots_log_in_as_the_serving_role_read_when_they_start(tmp_path: Path) -> None:
    logins = DatabaseLoginsConfig(secrets_dir=str(tmp_path), cluster_datadir=str(tmp_path / "pg"), cluster_port=1)
    wiring = ShopWiring(
        redis_url="redis://shop@127.0.0.1:1/0", pooled_database_url=POOLED, replica_database_url=REPLICA,
        database_logins=logins,
    )  # fmt: skip
    files = LoginFiles(tmp_path, "staging")
    assert app_env(wiring, tmp_path).serving_login is None  # not set up yet: the owner, as before
    files.record_serving("shop_b")  # a rotation happened after the definitions were loaded
    env = app_env(wiring, tmp_path)
    serving, one_off = env.backend_env(18001), env.backend_env()
    assert serving["SHOP_DATABASE_URL"] == POOLED.replace("shop@", "shop_b@")
    assert serving["SHOP_DATABASE_REPLICA_URL"] == REPLICA.replace("shop@", "shop_b@")
    assert env.backend_mounts(serving=True)[files.password_file("shop_b")] == apps.PASSWORD_MOUNT
    assert tmp_path / "staging-db-password" not in env.backend_mounts(serving=True)  # never the owner's
    # Migrations and the seed keep the owner's direct session and password.
    assert (
        one_off["SHOP_DATABASE_URL"] == DIRECT and env.mounts[tmp_path / "staging-db-password"] == apps.PASSWORD_MOUNT
    )
    assert (
        app_env(wiring, tmp_path, login="shop_a")
        .backend_env(18001)["SHOP_DATABASE_URL"]
        .startswith("postgresql+asyncpg://shop_a@")
    )
    with pytest.raises(DeployRefused, match="no alternating login roles"):
        app_env(ShopWiring(redis_url="redis://shop@127.0.0.1:1/0"), tmp_path, login="shop_a")


def test_a_record_naming_another_role_is_refused_with_the_fix(tmp_path: Path) -> None:
    files = LoginFiles(tmp_path, "production")
    files.record.write_text("postgres\n")
    with pytest.raises(ServiceError, match="names 'postgres', not one of the login roles shop_a, shop_b"):
        files.serving()


def test_a_verifier_is_recognised_by_its_password_only() -> None:
    verifier = scram_verifier("correct horse")
    assert verifier_matches(verifier, "correct horse")
    assert not verifier_matches(verifier, "correct horse!") and not verifier_matches("", "correct horse")
