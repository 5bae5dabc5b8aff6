"""`backup_freshness_sensor`: hourly, run the backup checks and alert when one fails.

Each tick reads the latest result of every backup check (Dagster's freshness checks on
`<env>/database_backup` and `<env>/restore_test`, and `wal_archive_continuous`), sends one
message through the notifier for the checks that turned bad or good again (shop_ops/backup/alerts.py
decides), and requests a run of those checks so the next tick reads results from this hour.
The freshness checks notice a backup that never ran, which a check inside `nightly_backup` cannot.
"""

from __future__ import annotations

import json
import time

import dagster as dg

from shop_ops.backup.alerts import CheckState, evaluate
from shop_ops.resources.notifier import NotifierResource

SENSOR_NAME = "backup_freshness_sensor"


def latest_check_states(instance: dg.DagsterInstance, check_keys: list[dg.AssetCheckKey]) -> list[CheckState]:
    """The latest evaluated result of each check (checks never evaluated yet are left out)."""
    records = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    states = []
    for key, record in records.items():
        event = record.event.dagster_event if record.event else None
        evaluation = getattr(event, "event_specific_data", None) if event else None
        if evaluation is None or not hasattr(evaluation, "passed"):
            continue  # planned, not evaluated yet
        states.append(
            CheckState(
                name=key.to_user_string(),
                passed=bool(evaluation.passed),
                description=evaluation.description or ("passed" if evaluation.passed else "failed"),
                evaluated_at=record.create_timestamp,
            )
        )
    return states


def build_backup_freshness_sensor(
    check_keys: list[dg.AssetCheckKey], default_status: dg.DefaultSensorStatus, minimum_interval_seconds: int = 3600
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        target=dg.AssetSelection.checks(*check_keys),
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            "Hourly: the backups' freshness checks (newest backup and restore test within the age limit) and "
            "the WAL archive's continuity; alerts through the notifier when one fails"
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext, notifier: NotifierResource) -> dg.SensorResult:
        previous = json.loads(context.cursor) if context.cursor else {}
        now = time.time()
        alert, state = evaluate(latest_check_states(context.instance, check_keys), previous, now, notifier.ui_url)
        if alert is not None:
            channels = notifier.notifier().send(alert.subject, alert.text, logger=context.log)
            context.log.info(f"{alert.subject}: sent to {', '.join(channels) or 'no channel'}")
        run = dg.RunRequest(
            run_key=f"backup-checks-{int(now // minimum_interval_seconds)}", asset_check_keys=check_keys
        )
        return dg.SensorResult(run_requests=[run], cursor=json.dumps(state))

    return _sensor
