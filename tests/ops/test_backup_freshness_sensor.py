"""backup_freshness_sensor with Dagster's own freshness checks, a real instance, a real webhook receiver and SMTP server."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import dagster as dg
import pytest

from shop_ops.assets.backups import database_backup, freshness_checks, restore_test
from shop_ops.resources.notifier import NotifierResource
from shop_ops.sensors.backup_freshness import build_backup_freshness_sensor

UI = "http://ui.example.test:3000"
CHECKS = freshness_checks([database_backup("staging"), restore_test("staging")], timedelta(hours=26))
KEYS = [key for checks in CHECKS for key in checks.check_keys]


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test(temp_dir=str(tmp_path)) as inst:
        yield inst


def _run_checks(instance: dg.DagsterInstance) -> None:
    """What the run the sensor requests does: evaluate the checks (no asset is materialized by it)."""
    job = dg.Definitions(asset_checks=CHECKS).resolve_implicit_global_asset_job_def()
    assert job.execute_in_process(instance=instance).success


def _tick(instance: dg.DagsterInstance, cursor: str | None, notifier: NotifierResource) -> dg.SensorResult:
    sensor = build_backup_freshness_sensor(KEYS, dg.DefaultSensorStatus.RUNNING)
    return sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": notifier}))


def test_alerts_when_a_backup_is_missing_once_and_when_it_is_back(tmp_path, instance, webhook, smtp):
    smtp_port, box = smtp
    url_file = tmp_path / "slack-url"
    url_file.write_text(webhook.url)
    notifier = NotifierResource(
        slack_webhook_url_file=str(url_file), smtp_host="127.0.0.1", smtp_port=smtp_port, smtp_to=["ops@shop.test"],
        ui_url=UI,
    )  # fmt: skip

    first = _tick(instance, None, notifier)  # nothing evaluated yet: nothing to say, the checks are requested
    assert not webhook.received and not box.messages
    assert [sorted(r.asset_check_keys) for r in first.run_requests] == [sorted(KEYS)]

    _run_checks(instance)  # no backup was ever taken: both checks fail
    second = _tick(instance, first.cursor, notifier)
    assert len(webhook.received) == 1 and len(box.messages) == 1
    text = webhook.received[0]["text"]
    assert "2 check(s) failing" in text
    assert "FAILING staging/database_backup:freshness_check: Asset has never been observed/materialized." in text
    assert "FAILING staging/restore_test:freshness_check" in text and f"{UI}/asset-groups/backups" in text

    _run_checks(instance)  # an hour later, still failing: not said again
    third = _tick(instance, second.cursor, notifier)
    assert len(webhook.received) == 1

    for key in ("database_backup", "restore_test"):
        instance.report_runless_asset_event(dg.AssetMaterialization(["staging", key], partition="2026-11-29"))
    _run_checks(instance)
    _tick(instance, third.cursor, notifier)
    assert len(webhook.received) == 2 and "checks ok again" in webhook.received[1]["text"]
    assert "ok again staging/database_backup:freshness_check" in webhook.received[1]["text"]
