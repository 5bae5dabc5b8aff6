"""shop_ops settings: a bad profile file stops loading with a message naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shop_ops.settings import ROOT, SettingsError, load_settings

LOCAL = yaml.safe_load((ROOT / "config" / "local.yaml").read_text())


def _write(tmp_path: Path, data: object, name: str = "local.yaml") -> Path:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def _with(path: str, value: object) -> dict:
    data = yaml.safe_load(yaml.safe_dump(LOCAL))
    node = data
    *parents, last = path.split(".")
    for key in parents:
        node = node[key]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return data


_DELETE = object()


def test_the_repository_profiles_load():
    local = load_settings(ROOT / "config" / "local.yaml")
    assert set(local.local_environments()) == {"staging", "production"}
    assert local.images.backend_budget_mb == 500 and local.images.frontend_budget_mb == 100
    assert load_settings(ROOT / "config" / "aws.yaml").profile == "aws"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("environments.staging.postgres_port", _DELETE), "environments.staging.postgres_port is missing"),
        (("environments.staging.postgres_port", 80), "environments.staging.postgres_port"),
        (("environments.production.redis.sentinel_port", 80), "environments.production.redis.sentinel_port"),
        (
            ("environments.staging.redis.carts_port", 6394),
            "carts_port uses port 6394, already used by environments.production.redis.cache_port",
        ),
        (
            ("environments.production.pgbouncer_port", 55432),
            "port 55432, already used by environments.production.pgbouncer_port",
        ),
        (("registry.prot", 5000), "registry.prot is not a known setting"),
        (("environments.production.router_port", 8081), "router_port uses port 8081, already used by"),
        (("images.backend_budget_mb", 0), "images.backend_budget_mb"),
        (("environments.production", _DELETE), "environments must be exactly staging, production"),
        (("profile", "cloud"), "profile"),
    ],
)
def test_bad_field_is_named_with_the_file(tmp_path, change, expected):
    path = _write(tmp_path, _with(*change))
    with pytest.raises(SettingsError) as err:
        load_settings(path)
    message = str(err.value)
    assert str(path) in message
    assert expected in message


def test_broken_yaml_and_missing_file_name_the_file(tmp_path):
    broken = _write(tmp_path, "profile: local\nenvironments: [unclosed\n")
    with pytest.raises(SettingsError, match="not valid YAML") as err:
        load_settings(broken)
    assert str(broken) in str(err.value)
    with pytest.raises(SettingsError, match="no such settings file"):
        load_settings(tmp_path / "absent.yaml")
    with pytest.raises(SettingsError, match="mapping of settings"):
        load_settings(_write(tmp_path, "- just\n- a list\n", "list.yaml"))


def test_aws_profile_without_aws_section_says_what_to_add(tmp_path):
    data = yaml.safe_load((ROOT / "config" / "aws.yaml").read_text())
    del data["aws"]
    with pytest.raises(SettingsError, match="needs an aws: section"):
        load_settings(_write(tmp_path, data, "aws.yaml"))
