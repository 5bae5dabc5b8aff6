"""SHOP_DATABASE_USER: the login user the ECS task takes from the app secret replaces the URL's, in both URLs."""

from __future__ import annotations

import pytest

from shop.db import database_url
from shop.settings import SettingsError, load_settings

GOOD = {
    "SHOP_DATABASE_URL": "postgresql+asyncpg://shop@db.internal:5432/shop",
    "SHOP_REDIS_URL": "redis://127.0.0.1:6379/0",
    "SHOP_DATABASE_PASSWORD": "a-rotated-password-1234",
}


def test_the_user_variable_replaces_the_urls_user_and_keeps_the_rest():
    url = database_url(load_settings({**GOOD, "SHOP_DATABASE_USER": "shop_app_clone"}))
    assert (url.username, url.password, url.host, url.port, url.database) == (
        "shop_app_clone", "a-rotated-password-1234", "db.internal", 5432, "shop"
    )  # fmt: skip


def test_without_it_the_urls_user_logs_in():
    assert database_url(load_settings(GOOD)).username == "shop"


def test_an_empty_user_is_refused_naming_the_variable():
    with pytest.raises(SettingsError, match="SHOP_DATABASE_USER is invalid"):
        load_settings({**GOOD, "SHOP_DATABASE_USER": ""})
