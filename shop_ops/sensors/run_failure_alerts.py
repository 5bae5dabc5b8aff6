"""`run_failure_alert_sensor`: one Slack/e-mail message per failed run in this code location.

Dagster's run status sensor cursor makes it once per run: the cursor moves past each failure event
whether the message went out or not. A notifier failure is logged and re-raised (redacted), so the
tick shows as failed in the UI with the reason; Dagster still advances the cursor (it never repeats
a run status sensor's side effects), so the next tick carries on with later runs instead of sticking.

A release that was refused, rolled back or failed has already been announced by its deployment
notification (shop_ops/release/notifications.py), which the release step sent with the same facts
and the run link: that step tags the run `shop-ops/release-notice/<step key>` once the notice
reached a channel. A failed run whose every failed step carries that tag gets no second message (the
tick's log says so); a run that failed for anything else (another step, the run worker dying, a
notice that did not go out) is announced here as before.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from shop_ops.release.alerts import RunFailure, StepFailure, build_failure_alert, redact
from shop_ops.release.notifications import already_announced
from shop_ops.resources.notifier import NotifierResource, NotifyError

SENSOR_NAME = "run_failure_alert_sensor"


class AlertDeliveryError(RuntimeError):
    """The alert for a failed run could not be delivered (the message is redacted)."""


def error_text(error: Any) -> str:
    """The message of a (serialized) Dagster error, unwrapped from Dagster's wrappers down to what the code raised."""
    if error is None:
        return ""
    while error.cause is not None and error.cls_name and error.cls_name.startswith("Dagster"):
        error = error.cause
    return error.message


def run_failure_from_context(context: dg.RunFailureSensorContext) -> RunFailure:
    """The failed run as the alert needs it, from the run and its event log (step failures)."""
    run = context.dagster_run
    steps = tuple(
        StepFailure(step_key=event.step_key or "?", error=error_text(getattr(event.event_specific_data, "error", None)))
        for event in context.get_step_failure_events()
    )
    failure_event = context.failure_event
    run_error = error_text(getattr(failure_event.event_specific_data, "error", None)) or failure_event.message
    return RunFailure(
        run_id=run.run_id,
        job_name=run.job_name,
        environment=run.tags.get("environment"),
        steps=steps,
        run_error=run_error,
    )


def build_run_failure_alert_sensor(
    default_status: dg.DefaultSensorStatus, minimum_interval_seconds: int = 30
) -> dg.SensorDefinition:
    @dg.run_failure_sensor(
        name=SENSOR_NAME,
        default_status=default_status,
        minimum_interval_seconds=minimum_interval_seconds,
        description="Any failed run in this code location -> one message to Slack and/or e-mail (notifier).",
    )
    def _sensor(context: dg.RunFailureSensorContext, notifier: NotifierResource) -> None:
        run_id = context.dagster_run.run_id
        failure = run_failure_from_context(context)
        if already_announced(context.dagster_run.tags, (step.step_key for step in failure.steps)):
            context.log.info(
                f"failed run {run_id} ({failure.job_name}): a release notice already announced it; no second message"
            )
            return
        secrets: tuple[str | None, ...] = ()
        try:
            sender = notifier.notifier()
            secrets = (sender.slack_webhook_url, sender.smtp_password)
            alert = build_failure_alert(failure, notifier.ui_url, secrets=secrets)
            channels = sender.send(alert.subject, alert.text, logger=context.log)
        except NotifyError as exc:
            # NotifyError never carries the webhook URL; redact again for anything the error text quotes.
            message = f"alert for failed run {run_id} ({context.dagster_run.job_name}) not delivered: {redact(str(exc), secrets)}"
            context.log.error(message)
            raise AlertDeliveryError(message) from None
        context.log.info(f"alert for failed run {run_id} sent to {', '.join(channels) or 'no channel'}")

    return _sensor
