"""A planted placeholder secret stops the backend before it serves, with one line naming it; SHOP_ENV=dev accepts it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from shop.settings import SettingsError, load_settings
from tests.support import ShopServer, shop_env

SERVE = str(Path(sys.executable).parent / "shop-serve")
URL = "postgresql+asyncpg://shop@127.0.0.1:5432/shop"


@pytest.mark.parametrize(
    ("planted", "line"),
    [
        ({"SHOP_DATABASE_PASSWORD": "CHANGE_ME"},
         'shop-serve: SHOP_DATABASE_PASSWORD is a placeholder ("CHANGE_ME"): set a real secret (see docs/security.md)'),
        ({"SHOP_ADMIN_TOKEN": "shop-dev-only", "SHOP_ENV": "staging"},
         'shop-serve: SHOP_ADMIN_TOKEN is a placeholder ("shop-dev-only"): set a real secret (see docs/security.md)'),
    ],
)  # fmt: skip
def test_placeholder_stops_the_backend_with_one_line(planted, line):
    env = shop_env(URL, "redis://127.0.0.1:6379/0", **planted)
    result = subprocess.run([SERVE], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [line]


def test_placeholder_in_a_secret_file_names_the_file_variable(tmp_path):
    token = tmp_path / "admin-token"
    token.write_text("change-me\n")
    env = {"SHOP_DATABASE_URL": URL, "SHOP_REDIS_URL": "redis://127.0.0.1:6379/0", "SHOP_ADMIN_TOKEN_FILE": str(token)}
    with pytest.raises(SettingsError, match=r'^SHOP_ADMIN_TOKEN_FILE holds a placeholder \("change-me"\)'):
        load_settings(env)
    # a real secret passes, and the dev profile takes the published one
    token.write_text("a-real-token-of-some-length\n")
    assert load_settings(env).admin_token.get_secret_value() == "a-real-token-of-some-length"
    assert load_settings({**env, "SHOP_ENV": "dev", "SHOP_REDIS_PASSWORD": "shop-dev-only"}).env == "dev"


def test_dev_profile_serves_with_the_dev_example_password(shop_db, redis_server, tmp_path):
    env = shop_env(shop_db, redis_server.url(0), SHOP_ENV="dev", SHOP_DATABASE_PASSWORD="shop-dev-only")
    server = ShopServer(env, tmp_path / "shop.log")
    server.start()
    try:
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
    finally:
        server.stop()
