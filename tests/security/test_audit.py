"""The audit trail: runs of a real Dagster instance, a real SQLite release ledger and the secrets resource's reads,
joined by `audit_log`; its check fails on a production deploy without an approver; no secret value gets in.

The deploy's pre-flight (the real deployment asset, its secrets read through the resource) is checked up to
its refusal; a whole promotion read by `audit_log` through the UI is tests/ops/test_localenv.py's.
"""

import pickle
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from shop_ops.assets.deployments import deployments
from shop_ops.assets.security import APPROVAL_CHECK, audit_log
from shop_ops.definitions import registry_resource, release_target
from shop_ops.resources.ledger import FILENAME, LedgerResource, ReleaseLedger, dagster_postgres_url
from shop_ops.resources.notifier import NotifierResource
from shop_ops.security.audit import AuditTrail, RunFacts, audit_frame, launched, unapproved_production_deploys
from shop_ops.security.secrets import SecretsError, SecretsResource
from shop_ops.services.redaction import KNOWN_SECRETS, MASK
from shop_ops.settings import load_settings
from tests.support import dagster_pg_env

DIGEST = "sha256:" + "ab" * 32
DAY = 86400


def _write(path: Path, value: str) -> Path:
    path.write_text(value + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def store(tmp_path: Path) -> Iterator[dict]:
    """A state folder: the ledger (SQLite) and the secret files a production promotion reads."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    values = {name: secrets.token_urlsafe(24) for name in ("production-db-password", "production-admin-token")}
    for name, value in values.items():
        _write(folder / name, value)
    ledger = LedgerResource(state_dir=str(tmp_path))
    yield {"ledger": ledger, "secrets": SecretsResource(folder=str(folder), ledger=ledger), "values": values}
    for value in values.values():
        KNOWN_SECRETS.discard(value)


class PromoteConfig(dg.Config):
    approved_by: str = ""
    note: str = ""
    api_token: str = ""


@dg.op
def promote(config: PromoteConfig, secrets: SecretsResource, ledger: LedgerResource) -> None:
    """Stands in for the production deployment (which needs containers): its reads and its ledger row."""
    secrets.database_credentials("production")
    secrets.get("production-admin-token")
    book = ledger.open()
    release_id = book.start("production", "9.9.9", DIGEST, DIGEST, "green", approved_by=config.approved_by or None)
    book.finish(release_id, "verified")


@dg.job
def promote_job() -> None:
    promote()


def _promote(instance: dg.DagsterInstance, store: dict, tags: dict | None = None, **config: str) -> str:
    result = promote_job.execute_in_process(
        run_config={"ops": {"promote": {"config": config}}}, instance=instance, tags=tags,
        resources={"secrets": store["secrets"], "ledger": store["ledger"]},
    )  # fmt: skip
    assert result.success
    return result.run_id


def _audit(instance: dg.DagsterInstance, store: dict, days: int = 90) -> tuple[pd.DataFrame, dg.AssetCheckEvaluation]:
    result = dg.materialize(
        [audit_log], instance=instance,
        resources={"audit_trail": AuditTrail(ledger=store["ledger"], retention_days=days)},
    )  # fmt: skip
    [check] = result.get_asset_check_evaluations()
    assert check.check_name == APPROVAL_CHECK
    return result.output_for_node("audit_log"), check


def test_the_audit_log_shows_launcher_config_approver_and_secret_names(store, tmp_path):
    with dg.DagsterInstance.ephemeral() as instance:
        tagged = _promote(instance, store, tags={"shop-ops/launched-by": "github-actions:grace"}, approved_by="ada")
        untagged = _promote(instance, store, approved_by="bob", note="from the UI")
        frame, check = _audit(instance, store)

    runs = frame[frame["source"] == "run"].set_index("run_id")
    assert set(runs.index) >= {tagged, untagged}
    row = runs.loc[tagged]
    assert (row["job"], row["status"], row["launched_by"], row["trigger"]) == (
        "promote_job", "SUCCESS", "github-actions:grace", "api",
    )  # fmt: skip
    assert row["approved_by"] == "ada" and row["version"] == "9.9.9" and row["release_status"] == "verified"
    assert row["secrets_read"] == ["production-admin-token", "production-db-password"]
    assert '"approved_by": "ada"' in row["config"] and "github-actions:grace" in row["tags"]
    # Open-source Dagster records no user for a launch without the tag: the row says nobody.
    assert pd.isna(runs.loc[untagged, "launched_by"]) and runs.loc[untagged, "approved_by"] == "bob"
    assert frame["at"].is_monotonic_decreasing  # newest first
    assert check.passed and check.metadata["unapproved"].value == 0
    # Every read is a row of the ledger's secret_access, with its run: names only.
    with sqlite3.connect(tmp_path / FILENAME) as conn:
        stored = conn.execute("SELECT run_id, name, action FROM secret_access ORDER BY at").fetchall()
    assert [(r, n) for r, n, _ in stored] == [
        (tagged, "production-db-password"), (tagged, "production-admin-token"),
        (untagged, "production-db-password"), (untagged, "production-admin-token"),
    ]  # fmt: skip


def test_the_check_fails_on_a_production_deploy_without_an_approver(store, tmp_path):
    book = ReleaseLedger(tmp_path)
    # A row the flow's guard would have refused (written around it): no approver.
    unapproved = book.start("production", "6.6.6", DIGEST, DIGEST, "blue")
    book.start("production", "6.6.5", DIGEST, DIGEST, "green", approved_by="ada")
    book.start("staging", "6.6.6", DIGEST, DIGEST, "green")  # staging needs none
    book.start("production", "6.6.4", DIGEST, DIGEST, "blue", kind="rollback")  # neither does a rollback
    with dg.DagsterInstance.ephemeral() as instance:
        frame, check = _audit(instance, store)
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["release_ids"].value == unapproved
    # Rows no run explains (written outside Dagster) are in the frame all the same.
    assert set(frame.loc[frame["source"] == "release ledger", "version"]) == {"6.6.6", "6.6.5", "6.6.4"}


def test_no_secret_value_planted_in_run_config_reaches_the_frame(store):
    password = store["values"]["production-db-password"]
    unknown = secrets.token_urlsafe(24)  # never read by anyone, but under a key that names a credential
    with dg.DagsterInstance.ephemeral() as instance:
        run_id = _promote(instance, store, approved_by="ada", note=f"db {password}", api_token=unknown)
        stored = instance.get_run_by_id(run_id).run_config  # Dagster keeps run config as given (docs/security.md)
        assert password in str(stored)
        frame, _ = _audit(instance, store)
    row = frame.set_index("run_id").loc[run_id]
    assert f"db {MASK}" in row["config"] and f'"api_token": "{MASK}"' in row["config"]
    dumped = pickle.dumps(frame) + frame.to_csv().encode()
    for value in (password, unknown, store["values"]["production-admin-token"]):
        assert value.encode() not in dumped


def test_retention_leaves_old_rows_out_and_prunes_old_secret_reads(store, tmp_path):
    book = ReleaseLedger(tmp_path)
    now = time.time()
    book.record_secret_access("production-admin-token", "files", "read", now - 40 * DAY, "run-long-gone")
    book.record_secret_access("production-admin-token", "files", "read", now - 2 * DAY, None)
    old = book.start("production", "1.0.0", DIGEST, DIGEST, "blue")  # no approver, but outside the window
    with sa.create_engine(f"sqlite:///{tmp_path / FILENAME}").begin() as conn:
        conn.execute(sa.text("UPDATE releases SET started_at = :at"), {"at": now - 40 * DAY})
    with dg.DagsterInstance.ephemeral() as instance:
        frame, check = _audit(instance, store, days=30)
    assert old not in set(frame["release_id"]) and check.passed
    assert [a["run_id"] for a in book.secret_accesses()] == [None]  # the 40-day-old read is deleted
    [outside] = frame[frame["source"] == "secret access"].itertuples()  # a read outside any run still shows
    assert outside.secrets_read == ["production-admin-token"]
    # The same window over runs (plain function): a run older than `since` is left out.
    runs = [RunFacts("new", "j", "SUCCESS", now, {}, {}), RunFacts("old", "j", "SUCCESS", now - 40 * DAY, {}, {})]
    assert list(audit_frame(runs, [], [], since=now - 30 * DAY)["run_id"]) == ["new"]


def test_who_launched_a_run_from_its_tags():
    assert launched({"shop-ops/launched-by": "ada"}) == ("ada", "api")
    assert launched({"dagster/from_ui": "true"}) == (None, "ui")
    assert launched({"dagster/sensor_name": "registry_push_sensor"}) == (None, "sensor registry_push_sensor")
    assert launched({"dagster/schedule_name": "daily_audit_schedule"}) == (None, "schedule daily_audit_schedule")
    assert launched({"dagster/backfill": "abc", "user": "ada@example.com"}) == ("ada@example.com", "backfill abc")
    rows = [{"release_id": "r", "environment": "production", "kind": "deploy", "started_at": 1.0, "approved_by": " "}]
    assert unapproved_production_deploys(rows) == ["r"]


def test_a_deploy_reads_its_secrets_through_the_resource_and_a_placeholder_refuses_it(tmp_path):
    """The real staging deployment asset: after the guards, its secrets are read (and recorded) through the
    resource; a placeholder admin token refuses it before the lock, the ledger row or a container."""
    folder = tmp_path / "secrets"
    folder.mkdir()
    password = secrets.token_urlsafe(24)
    _write(folder / "staging-db-password", password)
    _write(folder / "staging-admin-token", "CHANGE_ME")
    settings = load_settings()
    ledger = LedgerResource(state_dir=str(tmp_path))
    staging = next(a for a in deployments if a.key == dg.AssetKey(["staging", "deployment"]))
    config = {"version": "9.9.9", "backend_digest": DIGEST, "frontend_digest": DIGEST}
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(
            [staging], instance=instance, raise_on_error=False,
            resources={"release_target": release_target(settings, registry_resource(settings), ledger),
                       "notifier": NotifierResource(),
                       "secrets": SecretsResource(folder=str(folder), ledger=ledger)},
            run_config={"ops": {"staging__deployment": {"config": config}}},
        )  # fmt: skip
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    message = failure.step_failure_data.error.message + str(failure.step_failure_data.user_failure_data)
    assert 'staging deploy of 9.9.9 refused: secret staging-admin-token is a placeholder ("CHANGE_ME")' in message
    book = ReleaseLedger(tmp_path)
    assert book.history() == []
    assert [(a["name"], a["run_id"]) for a in book.secret_accesses()] == [
        ("staging-db-password", result.run_id), ("staging-admin-token", result.run_id),
    ]  # fmt: skip
    KNOWN_SECRETS.discard(password)


def test_a_read_that_cannot_be_recorded_fails(tmp_path, monkeypatch):
    _write(tmp_path / "staging-admin-token", secrets.token_urlsafe(24))
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB"):
        monkeypatch.delenv(name, raising=False)
    resource = SecretsResource(folder=str(tmp_path), ledger=LedgerResource(location="dagster_postgres"))
    with pytest.raises(SecretsError, match=r"secret staging-admin-token: its read could not be recorded .*DAGSTER_PG"):
        resource.get("staging-admin-token")
    assert resource.accessed == []


def test_the_postgresql_ledger_gains_run_ids_and_keeps_secret_reads(postgres):
    """aws keeps the ledger in Dagster's PostgreSQL: a releases table from before run ids gains the column."""
    env = dagster_pg_env(postgres, "audit_ledger")
    url = dagster_postgres_url(env)
    with sa.create_engine(url).begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA shop_ops"))
        conn.execute(sa.text(
            "CREATE TABLE shop_ops.releases (release_id TEXT PRIMARY KEY, environment TEXT NOT NULL, kind TEXT NOT NULL"
            " DEFAULT 'deploy', version TEXT NOT NULL, backend_digest TEXT NOT NULL, frontend_digest TEXT NOT NULL,"
            " slot TEXT NOT NULL, status TEXT NOT NULL, approved_by TEXT, started_at DOUBLE PRECISION NOT NULL,"
            " finished_at DOUBLE PRECISION, previous_release_id TEXT, reason TEXT, steps TEXT NOT NULL DEFAULT '{}',"
            " measures TEXT NOT NULL DEFAULT '{}')"
        ))  # fmt: skip
    book = ReleaseLedger(url, run_id="run-1")
    release_id = book.start("production", "2.0.0", DIGEST, DIGEST, "ecs", approved_by="ada")
    assert book.get(release_id).run_id == "run-1"
    book.record_secret_access("arn:aws:secretsmanager:eu-central-1:1:secret:shop/production/db", "aws", "read",
                              time.time(), "run-1")  # fmt: skip
    book.record_secret_access("old", "aws", "read", time.time() - 100 * DAY, None)
    assert book.prune_secret_accesses(time.time() - 90 * DAY) == 1
    assert [(a["name"], a["backend"], a["run_id"]) for a in ReleaseLedger(url).secret_accesses()] == [
        ("arn:aws:secretsmanager:eu-central-1:1:secret:shop/production/db", "aws", "run-1"),
    ]  # fmt: skip
