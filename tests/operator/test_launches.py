"""The operator commands' plain parts: what each launching command launches, time windows, the cache's key rules.

The launches are compared with what the UI and the sensors launch (the partitioned config's own tags,
`promote_run_config`, the push sensor's ReleaseConfig); the cache rules run against a real Redis (the
session's `redis_server`, a database of its own). The commands end to end: tests/ops/test_localenv.py (test_up_status_down_up, against its stack).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import redis

from shop_ops.assets.deployments import rollback_run_config
from shop_ops.operator import cache, launches
from shop_ops.operator.dagster_api import ASSET_JOB, OperatorError, promote_run_config
from shop_ops.operator.log_archive import parse_moment
from shop_ops.services.processes import RedisServer

RELEASE = {"version": "1.4.0", "backend_digest": "sha256:" + "b" * 64, "frontend_digest": "sha256:" + "f" * 64}
CACHE_DB = 9  # no other test uses it


def test_deploy_launches_the_jobs_the_sensor_and_the_ui_launch() -> None:
    staging = launches.deploy("staging", RELEASE, "ada")
    assert staging.job == "release_staging"
    assert staging.run_config == {
        "ops": {"staging__deployment": {"config": {**RELEASE, "approved_by": ""}}}
    }  # as registry_push_sensor's RunRequest
    assert staging.tags == {
        launches.LAUNCHED_BY: "ada", launches.COMMAND: "deploy", "release/version": "1.4.0"
    }  # fmt: skip
    production = launches.deploy("production", RELEASE, "ada", approved_by="grace")
    assert (production.job, production.run_config) == ("promote_production", promote_run_config(RELEASE, "grace"))
    with pytest.raises(OperatorError, match="needs --approved-by"):
        launches.deploy("production", RELEASE, "ada")
    with pytest.raises(OperatorError, match="not a release version"):
        launches.deploy("staging", {**RELEASE, "version": "1.4"}, "ada")
    with pytest.raises(OperatorError, match="backend digest"):
        launches.deploy("staging", {**RELEASE, "backend_digest": "latest"}, "ada")
    with pytest.raises(OperatorError, match="unknown environment 'qa'"):
        launches.deploy("qa", RELEASE, "ada")


def test_rollback_backup_and_migrate_carry_the_launchpads_partition_and_selection() -> None:
    rollback = launches.rollback("staging", "ada")
    assert rollback.job == "rollback"
    assert rollback.tags == {
        **rollback_run_config.get_tags_for_partition_key("staging"), launches.LAUNCHED_BY: "ada",
        launches.COMMAND: "rollback",
    }  # fmt: skip
    assert rollback.tags["dagster/partition"] == rollback.tags["environment"] == "staging"
    reason = rollback.run_config["ops"]["rollback_environment"]["config"]["reason"]
    assert "ada" in reason and "shop-ops rollback" in reason
    assert launches.rollback("production", "ada", "bad checkout").run_config == {
        "ops": {"rollback_environment": {"config": {"reason": "bad checkout"}}}
    }
    backup = launches.backup(date(2026, 11, 30), "ada")
    assert (backup.job, backup.tags["dagster/partition"]) == ("nightly_backup", "2026-11-30")
    migrate = launches.migrate("production", "ada")
    assert (migrate.job, migrate.asset_selection) == (ASSET_JOB, [["production", "database_schema"]])
    assert launches.health("ada").job == "check_environment_health"
    assert launches.renew_certificates("ada").job == "renew_certificates"


def test_the_operator_is_named_or_the_user(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USER", "grace")
    assert launches.operator_name() == "grace"
    assert launches.operator_name(" ada ") == "ada"
    with pytest.raises(OperatorError, match="--operator"):
        launches.operator_name("  ")


def test_time_windows() -> None:
    now = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert parse_moment("now", now) == now
    assert parse_moment("90m", now) == now - timedelta(minutes=90)
    assert parse_moment("2d", now) == now - timedelta(days=2)
    assert parse_moment("2026-12-01T10:00", now) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    assert parse_moment("2026-12-01T11:00+01:00", now) == datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    with pytest.raises(OperatorError, match="not a time"):
        parse_moment("yesterday", now)


@pytest.fixture
def cache_db(redis_server: RedisServer) -> redis.Redis:
    client = redis.Redis(port=redis_server.port, db=CACHE_DB, decode_responses=True)
    client.flushdb()
    client.set("catalog:version", 4)
    for key in ("catalog:4:search:20:1::lamp", "catalog:3:categories", "product:1", "product:2"):
        client.set(key, "{}")
    client.hset("cart:" + "a" * 32, mapping={"_": "1"})
    client.set("rate:other-tool", "1")  # not the shop's: nothing of cache clear --catalog
    yield client
    client.flushdb()
    client.close()


def test_catalog_clear_bumps_the_version_and_deletes_only_catalog_pages(cache_db: redis.Redis) -> None:
    done = cache.clear(cache_db, "staging", "test", "catalog", carts_elsewhere=False, carts_where="here")
    assert (done.deleted, done.catalog_version) == (4, 5)
    assert sorted(cache_db.keys()) == ["cart:" + "a" * 32, "catalog:version", "rate:other-tool"]
    again = cache.clear(cache_db, "staging", "test", "catalog", carts_elsewhere=False, carts_where="here")
    assert again.deleted == 0 and again.keys_left == 3  # idempotent: nothing left to delete


def test_clear_all_keeps_carts_that_share_the_database(cache_db: redis.Redis) -> None:
    done = cache.clear(cache_db, "staging", "test", "all", carts_elsewhere=False, carts_where="here")
    assert done.deleted == 6 and cache_db.keys() == ["cart:" + "a" * 32]
    done = cache.clear(cache_db, "staging", "test", "all", carts_elsewhere=True, carts_where="Sentinel")
    assert done.deleted == 1 and done.keys_left == 0  # carts elsewhere: the whole database goes
