"""Settings validation: a bad or missing variable stops start-up with one line naming it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shop.settings import SettingsError, load_settings

GOOD = {
    "SHOP_DATABASE_URL": "postgresql+asyncpg://shop@127.0.0.1:5432/shop",
    "SHOP_REDIS_URL": "redis://127.0.0.1:6379/0",
}


def test_valid_environment_loads_with_defaults():
    settings = load_settings(GOOD)
    assert settings.port == 8000
    assert settings.workers == 2
    assert settings.host == "127.0.0.1"


def test_plain_postgresql_scheme_becomes_asyncpg():
    settings = load_settings({**GOOD, "SHOP_DATABASE_URL": "postgresql://shop@db:5432/shop"})
    assert settings.database_url.startswith("postgresql+asyncpg://")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"SHOP_REDIS_URL": GOOD["SHOP_REDIS_URL"]}, "SHOP_DATABASE_URL is not set"),
        ({"SHOP_DATABASE_URL": GOOD["SHOP_DATABASE_URL"]}, "SHOP_REDIS_URL is not set"),
        ({**GOOD, "SHOP_DATABASE_URL": "mysql://shop@db/shop"}, "SHOP_DATABASE_URL is invalid: must start with"),
        ({**GOOD, "SHOP_DATABASE_URL": "postgresql://shop@db:5432"}, "SHOP_DATABASE_URL is invalid: names no database"),
        ({**GOOD, "SHOP_REDIS_URL": "http://cache:6379"}, "SHOP_REDIS_URL is invalid"),
        ({**GOOD, "SHOP_PORT": "eighty"}, "SHOP_PORT is invalid"),
        ({**GOOD, "SHOP_PORT": "70000"}, "SHOP_PORT is invalid"),
        ({**GOOD, "SHOP_WORKERS": "0"}, "SHOP_WORKERS is invalid"),
        ({**GOOD, "SHOP_LOG_LEVEL": "loud"}, "SHOP_LOG_LEVEL is invalid"),
    ],
)
def test_bad_setting_names_the_variable(env, expected):
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert expected in str(err.value)
    assert "\n" not in str(err.value)


def test_password_in_url_is_refused_without_echoing_it():
    env = {**GOOD, "SHOP_DATABASE_URL": "postgresql://shop:hunter2-secret@db:5432/shop"}
    with pytest.raises(SettingsError) as err:
        load_settings(env)
    assert "SHOP_DATABASE_PASSWORD" in str(err.value)
    assert "hunter2-secret" not in str(err.value)


def test_secrets_come_from_files(tmp_path: Path):
    secret = tmp_path / "db-password"
    secret.write_text("s3cret-from-file\n")
    settings = load_settings({**GOOD, "SHOP_DATABASE_PASSWORD_FILE": str(secret)})
    assert settings.database_password is not None
    assert settings.database_password.get_secret_value() == "s3cret-from-file"
    assert "s3cret-from-file" not in repr(settings)


def test_unreadable_secret_file_names_variable_and_path(tmp_path: Path):
    missing = tmp_path / "nope"
    with pytest.raises(SettingsError) as err:
        load_settings({**GOOD, "SHOP_REDIS_PASSWORD_FILE": str(missing)})
    assert "SHOP_REDIS_PASSWORD_FILE" in str(err.value)
    assert str(missing) in str(err.value)


def test_server_refuses_to_start_with_one_line_naming_the_variable():
    serve = Path(sys.executable).parent / "shop-serve"
    env = {"PATH": "/usr/bin:/bin", "SHOP_REDIS_URL": "redis://127.0.0.1:1/0", "SHOP_DATABASE_PASSWORD": "pw-xyz-123"}
    result = subprocess.run([str(serve)], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines == ["shop-serve: SHOP_DATABASE_URL is not set; set it (see .env.example)"]
    assert "pw-xyz-123" not in result.stderr + result.stdout
