"""run_failure_alert_sensor against a real Dagster instance, a real webhook receiver and a real SMTP server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import dagster as dg
import pytest

from shop_ops.release.alerts import RunFailure, StepFailure, build_failure_alert, redact, truncate_error
from shop_ops.resources.notifier import NotifierResource, notifier_from_env
from shop_ops.sensors.run_failure_alerts import (
    SENSOR_NAME,
    build_run_failure_alert_sensor,
)
from shop_ops.services.processes import free_port

SECRET = "hunter2"
TOKEN = "T000/B000/secret-token"
UI = "http://ui.example.test:3000"


# --- plain message building and redaction -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "leak"),
    [
        ("could not connect to postgresql://shop:hunter2@db:5432/shop", "hunter2"),
        ("host=db user=shop password=hunter2 dbname=shop", "hunter2"),
        ('{"api_key": "k3y-abcdef", "ok": 1}', "k3y-abcdef"),
        ("AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI"),
        ("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc", "eyJhbGciOiJIUzI1NiJ9"),
        ("posting to https://hooks.slack.com/services/T1/B2/xyz failed", "T1/B2/xyz"),
        ("key AKIAABCDEFGHIJKLMNOP rejected", "AKIAABCDEFGHIJKLMNOP"),
        ("GET https://api.test/x?token=s3cr3tvalue&page=2", "s3cr3tvalue"),
    ],
)
def test_redact_credentials(raw, leak):
    out = redact(raw)
    assert leak not in out
    assert "***" in out


def test_redact_keeps_what_is_not_a_secret():
    text = "FATAL: password authentication failed for user shop at http://127.0.0.1:3000/runs/abc"
    assert redact(text) == text
    assert redact("postgresql://shop:hunter2@db/shop") == "postgresql://shop:***@db/shop"
    assert redact("the smtp pw is Pa55word!", secrets=["Pa55word!", None, ""]) == "the smtp pw is ***"


def test_truncate_error_first_lines_bounded():
    text = "\n".join(f"line {i}" for i in range(50)) + "\n"
    out = truncate_error(text, max_lines=3)
    assert out.splitlines()[:3] == ["line 0", "line 1", "line 2"]
    assert "47 more lines" in out
    assert len(truncate_error("x" * 10_000)) <= 1500
    assert truncate_error("") == "(no error message)"


def test_message_names_job_environment_steps_error_and_link():
    failure = RunFailure(
        run_id="r-123",
        job_name="release_staging",
        environment="staging",
        steps=(StepFailure("staging__migrate", "OperationalError: postgresql://shop:hunter2@db/shop refused"),),
    )
    alert = build_failure_alert(failure, UI + "/", secrets=["https://hooks.example/" + TOKEN])
    assert alert.subject == "[shop-ops] run failed: release_staging (staging)"
    assert "Environment: staging" in alert.text
    assert "Failed step(s): staging__migrate" in alert.text
    assert f"Run: {UI}/runs/r-123" in alert.text
    assert "OperationalError: postgresql://shop:***@db/shop refused" in alert.text
    assert SECRET not in alert.subject + alert.text


def test_message_without_steps_or_environment():
    alert = build_failure_alert(RunFailure("r-9", "nightly_backup", run_error="run worker died"), UI)
    assert "Environment: -" in alert.text and "Failed step(s): -" in alert.text
    assert "Error in run:\nrun worker died" in alert.text


def test_ui_url_of_the_links():
    assert notifier_from_env({}).ui_url == "http://127.0.0.1:3000"
    assert notifier_from_env({"SHOP_OPS_UI_URL": "https://dagster.shop.test/"}).ui_url == "https://dagster.shop.test"
    assert build_run_failure_alert_sensor(dg.DefaultSensorStatus.RUNNING).name == SENSOR_NAME


# --- the sensor against a real instance and real receivers ---------------------------------------------


@dg.op
def connect_db():
    raise RuntimeError(f"could not connect to postgresql://shop:{SECRET}@db/shop\nis the server running?")


@dg.op
def fine():
    return 1


@dg.job(tags={"environment": "staging"})
def broken_release():
    connect_db()


@dg.job
def healthy():
    fine()


@pytest.fixture
def instance(tmp_path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def _notifier(tmp_path, webhook_url: str, smtp_port: int) -> NotifierResource:
    url_file = tmp_path / "slack-url"
    url_file.write_text(webhook_url)
    return NotifierResource(
        slack_webhook_url_file=str(url_file),
        smtp_host="127.0.0.1",
        smtp_port=smtp_port,
        smtp_to=["ops@shop.test"],
        ui_url=UI,
    )


def _tick(instance, cursor, notifier):
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": notifier})
    return build_run_failure_alert_sensor(dg.DefaultSensorStatus.RUNNING).evaluate_tick(context)


def test_one_message_per_failed_run_never_twice(tmp_path, instance, webhook, smtp, monkeypatch, capfd):
    smtp_port, box = smtp
    notifier = _notifier(tmp_path, webhook.url, smtp_port)

    first = _tick(instance, None, notifier)  # the first tick only sets the cursor
    assert first.skip_message and not webhook.received

    runs = [broken_release.execute_in_process(instance=instance, raise_on_error=False) for _ in range(2)]
    assert healthy.execute_in_process(instance=instance).success
    assert not any(r.success for r in runs)

    capfd.readouterr()  # the failed runs' own logs; from here on only the sensor's
    second = _tick(instance, first.cursor, notifier)
    assert [r.dagster_run.run_id for r in second.dagster_run_reactions] == [r.run_id for r in runs]
    assert all(r.error is None for r in second.dagster_run_reactions)
    assert len(webhook.received) == 2 and len(box.messages) == 2
    for run, post, mail in zip(runs, webhook.received, box.messages, strict=True):
        for text in (post["text"], mail):
            assert "broken_release" in text
            assert "Environment: staging" in text
            assert "Failed step(s): connect_db" in text
            assert "RuntimeError: could not connect to postgresql://shop:***@db/shop" in text
            assert f"{UI}/runs/{run.run_id}" in text
    assert "Subject: [shop-ops] run failed: broken_release (staging)" in box.messages[0]

    third = _tick(instance, second.cursor, notifier)  # same runs, evaluated again: nothing new
    assert not third.dagster_run_reactions
    assert len(webhook.received) == 2 and len(box.messages) == 2

    logs = capfd.readouterr().err
    assert logs.count("notifier: sent '[shop-ops] run failed: broken_release (staging)' to slack, email") == 2
    everything = json.dumps(webhook.received) + "".join(box.messages) + logs + repr(third) + repr(second)
    assert SECRET not in everything and TOKEN not in everything


def test_receiver_down_fails_the_tick_clearly_then_carries_on(tmp_path, instance, webhook, smtp, capfd):
    smtp_port, box = smtp
    down = f"http://127.0.0.1:{free_port()}/services/{TOKEN}"  # nothing listens there
    cursor = _tick(instance, None, _notifier(tmp_path, down, smtp_port)).cursor

    lost = broken_release.execute_in_process(instance=instance, raise_on_error=False)
    capfd.readouterr()
    failed = _tick(instance, cursor, _notifier(tmp_path, down, smtp_port))
    [reaction] = failed.dagster_run_reactions
    assert reaction.error is not None
    error = reaction.error.to_string()
    assert f"alert for failed run {lost.run_id} (broken_release) not delivered: slack: ConnectError" in error
    logs = capfd.readouterr().err
    assert f"ERROR - alert for failed run {lost.run_id} (broken_release) not delivered: slack: ConnectError" in logs
    assert len(box.messages) == 1  # e-mail still went out
    assert SECRET not in error + logs and TOKEN not in error + logs

    # the cursor moved on: the next failed run alerts normally once the receiver is back
    later = broken_release.execute_in_process(instance=instance, raise_on_error=False)
    ok = _tick(instance, failed.cursor, _notifier(tmp_path, webhook.url, smtp_port))
    assert [r.dagster_run.run_id for r in ok.dagster_run_reactions] == [later.run_id]
    assert ok.dagster_run_reactions[0].error is None
    assert len(webhook.received) == 1 and later.run_id in webhook.received[0]["text"]


def test_direct_invocation_with_run_status_sensor_context(tmp_path, instance, webhook, smtp):
    smtp_port, box = smtp
    result = broken_release.execute_in_process(instance=instance, raise_on_error=False)
    context = dg.build_run_status_sensor_context(
        sensor_name=SENSOR_NAME,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"notifier": _notifier(tmp_path, webhook.url, smtp_port)},
    )
    sensor = build_run_failure_alert_sensor(dg.DefaultSensorStatus.STOPPED)
    sensor(context)
    assert len(webhook.received) == 1 and len(box.messages) == 1
    assert "Failed step(s): connect_db" in webhook.received[0]["text"]
    assert SECRET not in webhook.received[0]["text"] + box.messages[0]
