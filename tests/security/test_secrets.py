"""The `secrets` resource: files of mode 0600 (local) and AWS Secrets Manager (a real moto server), placeholders refused."""

from __future__ import annotations

import json
import os
import secrets

import pytest

from shop_ops.security.secrets import SecretsError, SecretsResource
from shop_ops.services.redaction import KNOWN_SECRETS, MASK, PlaceholderSecretError, redact


@pytest.fixture
def folder(tmp_path):
    path = tmp_path / "secrets"
    path.mkdir()
    return path


def _write(path, value, mode=0o600):
    path.write_text(value + "\n")
    path.chmod(mode)
    return path


def test_files_backend_reads_the_local_names_records_names_and_redacts(folder, tmp_path):
    password, key = secrets.token_urlsafe(24), secrets.token_hex(32)
    _write(folder / "staging-db-password", password)
    backup_key = _write(tmp_path / "elsewhere-backup.key", key)
    resource = SecretsResource(folder=str(folder), paths={"backup.key": str(backup_key)})
    assert resource.database_credentials("staging") == ("shop", password)
    assert resource.get("backup.key") == key
    assert [(a.name, a.backend, a.action) for a in resource.accessed] == [
        ("staging-db-password", "files", "read"),
        ("backup.key", "files", "read"),
    ]
    assert password not in json.dumps([a.as_dict() for a in resource.accessed])
    # Read once, masked everywhere from now on.
    assert redact(f"connect failed for {password}") == f"connect failed for {MASK}"
    KNOWN_SECRETS.discard(password)
    KNOWN_SECRETS.discard(key)


def test_files_backend_refuses_a_file_others_can_read(folder):
    path = _write(folder / "production-admin-token", secrets.token_urlsafe(24), mode=0o644)
    resource = SecretsResource(folder=str(folder))
    with pytest.raises(
        SecretsError, match=rf"{path} is readable by others and group \d+ \(mode 644\): chmod 600 {path}"
    ):
        resource.get("production-admin-token")
    assert resource.accessed == []


def test_files_backend_allows_only_the_shared_group(folder):
    path = _write(folder / "staging-redis-password", secrets.token_urlsafe(24), mode=0o640)
    os.chown(path, -1, 10001)
    assert SecretsResource(folder=str(folder), shared_group=10001).get("staging-redis-password")
    with pytest.raises(SecretsError, match="readable by group 10001"):
        SecretsResource(folder=str(folder), shared_group=10002).get("staging-redis-password")


def test_files_backend_refuses_placeholders_and_writes_privately(folder):
    _write(folder / "staging-db-password", "CHANGE_ME")
    resource = SecretsResource(folder=str(folder), shared_group=10001)
    with pytest.raises(PlaceholderSecretError, match=r'secret staging-db-password is a placeholder \("CHANGE_ME"\)'):
        resource.database_credentials("staging")
    os.chown(folder / "staging-db-password", -1, 10001)
    (folder / "staging-db-password").chmod(0o640)
    new = secrets.token_urlsafe(24)
    resource.put("staging-db-password", new)
    stat = (folder / "staging-db-password").stat()
    assert (stat.st_mode & 0o777, stat.st_gid) == (0o640, 10001)  # the containers' group keeps its grant
    assert resource.get("staging-db-password") == new
    with pytest.raises(PlaceholderSecretError, match="shop-dev-only"):
        resource.put("staging-db-password", "shop-dev-only")
    resource.put("fresh", new)
    assert (folder / "fresh").stat().st_mode & 0o777 == 0o600
    KNOWN_SECRETS.discard(new)
