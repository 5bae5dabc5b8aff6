"""Each local environment's shop admin token: where it lives, how `up` makes it, how the backends get it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from shop.settings import load_settings as load_shop_settings
from shop_ops.definitions import registry_resource, release_target
from shop_ops.localenv.stack import CONTAINER_UID, _ensure_secret_file
from shop_ops.release import apps
from shop_ops.resources.ledger import LedgerResource
from shop_ops.settings import ROOT, load_settings

LOCAL = ROOT / "config" / "local.yaml"


def test_the_token_file_sits_beside_the_database_password(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("SHOP_OPS_STAGING_ADMIN_TOKEN_FILE", raising=False)
    settings = load_settings(LOCAL)
    assert settings.admin_token_file("staging") == settings.state_path / "secrets" / "staging-admin-token"
    assert settings.admin_token_file("staging").parent == settings.database_password_file("staging").parent


def test_an_environment_variable_names_another_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("SHOP_OPS_PRODUCTION_ADMIN_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.delenv("SHOP_OPS_STAGING_ADMIN_TOKEN_FILE", raising=False)
    settings = load_settings(LOCAL)
    assert settings.admin_token_file("production") == tmp_path / "token"
    assert settings.admin_token_file("staging") == settings.state_path / "secrets" / "staging-admin-token"


def test_up_makes_the_token_once_readable_by_the_containers_group(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = tmp_path / "secrets" / "staging-admin-token"
    _ensure_secret_file(path)
    token = path.read_text()
    assert len(token) >= 32 and token.strip() == token
    mode = path.stat()
    assert stat.S_IMODE(mode.st_mode) == 0o640
    if os.geteuid() == 0:
        assert mode.st_gid == CONTAINER_UID
    _ensure_secret_file(path)
    assert path.read_text() == token  # kept: the running backends hold it
    assert token not in capsys.readouterr().out


def test_backends_mount_the_token_file_read_by_the_shop(tmp_path: Path):
    token_file = tmp_path / "admin-token"
    token_file.write_text("tok-3f9a\n")
    env = apps.AppEnvironment(
        stack="s", name="staging", database_url="postgresql+asyncpg://shop@127.0.0.1:5432/shop",
        password_file=tmp_path / "db-password", redis_url="redis://127.0.0.1:6379/0", admin_token_file=token_file,
    )  # fmt: skip
    assert env.mounts[token_file] == apps.ADMIN_TOKEN_MOUNT == "/run/secrets/shop-admin-token"
    backend = env.backend_env(8000)
    assert backend["SHOP_ADMIN_TOKEN_FILE"] == apps.ADMIN_TOKEN_MOUNT
    assert "tok-3f9a" not in str(backend)
    # What the backend sees once the file is mounted where the variable points.
    inside = {**backend, "SHOP_ADMIN_TOKEN_FILE": str(token_file), "SHOP_DATABASE_PASSWORD_FILE": ""}
    shop = load_shop_settings(inside)
    assert shop.admin_token is not None and shop.admin_token.get_secret_value() == "tok-3f9a"


def test_the_release_target_passes_each_environments_token_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.delenv("SHOP_OPS_STAGING_ADMIN_TOKEN_FILE", raising=False)
    monkeypatch.setenv("SHOP_OPS_PRODUCTION_ADMIN_TOKEN_FILE", str(tmp_path / "production-token"))
    settings = load_settings(LOCAL)
    target = release_target(settings, registry_resource(settings), LedgerResource(state_dir=str(tmp_path)))
    assert target.admin_token_files == {
        "staging": str(settings.state_path / "secrets" / "staging-admin-token"),
        "production": str(tmp_path / "production-token"),
    }


def test_release_containers_log_under_the_state_folder_named_by_slot_and_release(tmp_path: Path):
    """Where the central log collector finds each container's log: <folder>/<env>/<role>_<slot>_<release>.log."""
    env = apps.AppEnvironment(
        stack="s", name="staging", database_url="postgresql+asyncpg://shop@127.0.0.1:5432/shop",
        password_file=tmp_path / "db-password", redis_url="redis://127.0.0.1:6379/0",
        admin_token_file=tmp_path / "token", log_folder=tmp_path / "logs",
    )  # fmt: skip
    pinned = "127.0.0.1:5055/shop/backend@sha256:" + "ab" * 32
    assert env.log_options("backend", "green", pinned) == {
        "log_path": tmp_path / "logs" / "staging" / "backend_green_sha256-abababababab.log",
        "log_max_size": apps.CONTAINER_LOG_MAX_SIZE,
    }
    assert apps.release_label("localhost/shop/frontend:1.4.0-abc123") == "1.4.0-abc123"
    assert apps.release_label("127.0.0.1:5055/shop/backend") == "latest"
    assert apps.AppEnvironment(**{**env.__dict__, "log_folder": None}).log_options("backend", "blue", pinned) == {}
    settings = load_settings(LOCAL)
    target = release_target(settings, registry_resource(settings), LedgerResource(state_dir=str(tmp_path)))
    assert target.container_logs_dir == str(settings.state_path / "logs" / "containers")
