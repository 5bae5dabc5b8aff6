"""`log_alert_sensor`: error spikes and new kinds of errors in the central logs -> one message through the notifier.

Every minute it reads the `error_log` resource (shop_ops/observability/log_alerts.py): the last
whole minute against the hour before it (a spike: more than `observability.error_lines_per_minute`
error lines and five times the hour's rate), and the error kinds logged since its previous tick
that the 7 days before had not. Its cursor keeps how far it has read and the minute of the last
spike it reported, so each finding is sent once. Once an hour it also applies the log store's
retention (`observability.log_retention_days`). A store that cannot be read skips the tick,
saying why; nothing is marked as read then.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta

import dagster as dg
from botocore.exceptions import BotoCoreError, ClientError

from shop_ops.observability.log_alerts import ErrorLogResource, check
from shop_ops.observability.logs import LogsError
from shop_ops.resources.notifier import NotifierResource

SENSOR_NAME = "log_alert_sensor"
RETENTION_EVERY = timedelta(hours=1)


def build_log_alert_sensor(
    threshold: int, default_status: dg.DefaultSensorStatus, minimum_interval_seconds: int = 60
) -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description=(
            f"Every minute: an error spike (> {threshold} error lines a minute and 5x the hour before) or a kind "
            "of error not seen in 7 days, in the central logs -> notifier"
        ),
    )
    def _sensor(
        context: dg.SensorEvaluationContext, error_log: ErrorLogResource, notifier: NotifierResource
    ) -> dg.SensorResult:
        now = datetime.now(UTC)
        cursor = json.loads(context.cursor) if context.cursor else {}
        since = (
            datetime.fromisoformat(cursor["checked_until"]) if "checked_until" in cursor else now - timedelta(minutes=1)
        )
        try:
            findings = check(error_log, now, since, threshold)
            swept = cursor.get("retention_at", "")
            if not swept or datetime.fromisoformat(swept) < now - RETENTION_EVERY:
                context.log.info(f"log retention: {error_log.apply_retention()} old lines deleted")
                swept = now.isoformat()
        except (LogsError, BotoCoreError, ClientError) as exc:
            return dg.SensorResult(skip_reason=dg.SkipReason(f"the log store could not be read: {exc}"))
        spike = findings.spike
        if spike is not None and cursor.get("spike_minute") == spike.minute.isoformat():
            spike = None  # reported on an earlier tick
        new_cursor = {
            "checked_until": findings.checked_until.isoformat(),
            "spike_minute": findings.spike.minute.isoformat() if findings.spike else cursor.get("spike_minute"),
            "retention_at": swept,
        }
        message = dataclasses.replace(findings, spike=spike).message(notifier.ui_url)
        if message is None:
            return dg.SensorResult(
                skip_reason=dg.SkipReason("no error spike, no new kind of error"), cursor=json.dumps(new_cursor)
            )
        subject, text = message
        channels = notifier.notifier().send(subject, text, logger=context.log)
        reason = f"{subject}: sent to {', '.join(channels) or 'no channel (none configured)'}"
        return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=json.dumps(new_cursor))

    return _sensor
