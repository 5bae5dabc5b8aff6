"""log_alert_sensor over the real log store, and the same answers from CloudWatch Logs (moto) for the same lines.

The lines are the shop's JSON log lines (app/shop/logs.py: an error's `code`, or an exception in
`exc`). They go into `logs.records` of a real PostgreSQL (the table rsyslog writes;
tests/observability/test_logs.py covers rsyslog's side) and, as the ECS tasks' awslogs driver
writes them, into the log group infra/terraform gives the staging backend, on a local moto server
(the one stand-in: AWS's API). Both stores must give the same counts per minute and kinds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import psycopg2
import pytest

from shop_ops.observability import logs
from shop_ops.observability.log_alerts import ErrorLogResource, check, error_kind
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.sensors.log_alerts import build_log_alert_sensor
from shop_ops.services.processes import PostgresCluster
from tests.support import new_database

ROOT = Path(__file__).resolve().parents[2]
LOG_GROUP = "/shop/staging/backend"  # infra/terraform/environments/staging/main.tf, module "logs"
THRESHOLD = 20

Line = tuple[datetime, dict]


def shop_lines(now: datetime) -> list[Line]:
    """A week-old declined payment, one a minute for the hour before the last minute, then 30 new DB timeouts in it."""
    last = now.replace(second=0, microsecond=0) - timedelta(minutes=1)

    def line(at: datetime, level: str, **fields: str) -> Line:
        return at, {"ts": at.isoformat(), "level": level, "logger": "shop", "msg": "request failed", **fields}

    lines = [line(now - timedelta(days=3), "error", code="payment_declined")]
    lines += [line(last - timedelta(minutes=60 - i, seconds=-5), "error", code="payment_declined") for i in range(60)]
    lines += [line(last + timedelta(seconds=1 + i), "error", code="db_timeout") for i in range(30)]
    trace = 'Traceback (most recent call last):\n  File "x.py", line 1\nredis.exceptions.ConnectionError: gone'
    lines += [line(last + timedelta(seconds=45), "ERROR", exc=trace)]
    lines += [line(last + timedelta(seconds=50), "info", code="not_an_error")]
    return sorted(lines, key=lambda pair: pair[0])


@pytest.fixture
def now() -> datetime:
    """Now, at least 10 s before the next minute (the test's last whole minute must stay the sensor's)."""
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    return datetime.now(UTC)


@pytest.fixture
def log_store(postgres: PostgresCluster, now: datetime) -> Iterator[str]:
    """A log store database with the lines of shop_lines(now) in logs.records; its DSN."""
    dsn = new_database(postgres, "logstore").replace("postgresql+asyncpg://", "postgresql://")
    logs.ensure_schema(dsn)
    with psycopg2.connect(dsn) as conn, conn.cursor() as cur:
        for at, fields in shop_lines(now):
            cur.execute(
                "INSERT INTO logs.records (ts, service, environment, level, message, fields)"
                " VALUES (%s, 'backend', 'staging', logs.norm_level(%s), %s, %s)",
                (at, fields["level"], fields["msg"], json.dumps(fields)),
            )
    conn.close()
    yield dsn


@pytest.fixture
def cloudwatch(aws: AwsResource, now: datetime) -> ErrorLogResource:
    """The same lines in the staging backend's log group, one stream per task as the awslogs driver names them."""
    client = aws.client("logs")
    client.create_log_group(logGroupName=LOG_GROUP)
    stream = "backend/backend/0123456789abcdef"
    client.create_log_stream(logGroupName=LOG_GROUP, logStreamName=stream)
    events = [{"timestamp": int(at.timestamp() * 1000), "message": json.dumps(f)} for at, f in shop_lines(now)]
    client.put_log_events(logGroupName=LOG_GROUP, logStreamName=stream, logEvents=events)
    return ErrorLogResource(
        store="cloudwatch", log_groups=[LOG_GROUP], region=aws.region, endpoint_url=aws.endpoint_url
    )


def test_error_kinds_follow_the_tables_rule() -> None:
    assert error_kind({"level": "error", "code": "db_timeout", "exc": "ValueError: x"}) == "db_timeout"
    assert error_kind({"level": "ERROR", "exc": "Traceback...\nredis.exceptions.ConnectionError: gone"}) == (
        "redis.exceptions.ConnectionError"
    )
    assert error_kind({"level": "critical", "status": 502}) == "http_502"
    assert error_kind({"level": "warning", "code": "slow"}) is None


def test_both_stores_answer_alike(log_store: str, cloudwatch: ErrorLogResource, now: datetime) -> None:
    terraform = (ROOT / "infra/terraform/environments/staging/main.tf").read_text()
    assert '"/shop/${local.environment}/backend"' in terraform and 'environment = "staging"' in terraform
    local = ErrorLogResource(store="postgres", dsn=log_store)
    since, until = now - timedelta(hours=2), now
    counts = local.error_counts_per_minute(since, until)
    assert counts == cloudwatch.error_counts_per_minute(since, until)
    last = now.replace(second=0, microsecond=0) - timedelta(minutes=1)
    assert counts[last] == 31 and counts[last - timedelta(minutes=1)] == 1 and len(counts) == 121
    kinds = local.error_kinds(now - timedelta(days=4), until)
    assert kinds == cloudwatch.error_kinds(now - timedelta(days=4), until)
    assert kinds == {"payment_declined": 61, "db_timeout": 30, "redis.exceptions.ConnectionError": 1}


def test_a_spike_with_a_new_kind_is_sent_once(log_store: str, webhook, now: datetime) -> None:
    error_log = ErrorLogResource(store="postgres", dsn=log_store)
    findings = check(error_log, now, now - timedelta(minutes=10), THRESHOLD)
    assert findings.spike is not None and findings.spike.count == 31 and findings.spike.baseline == 1.0
    assert findings.new_kinds == {"db_timeout": 30, "redis.exceptions.ConnectionError": 1}

    sensor = build_log_alert_sensor(THRESHOLD, dg.DefaultSensorStatus.STOPPED)
    notifier = NotifierResource(slack_webhook_url=webhook.url)
    resources = {"error_log": error_log, "notifier": notifier}
    cursor = json.dumps({"checked_until": (now - timedelta(minutes=10)).isoformat()})
    with dg.instance_for_test() as instance:
        first = sensor(dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources))
        assert "shop logs: error spike: sent to slack" in first.skip_reason.skip_message
        [message] = webhook.received
        text = json.dumps(message)
        assert "31 error lines" in text and "db_timeout (30x)" in text and "payment_declined" not in text
        again = sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor, resources=resources))
    assert again.skip_reason.skip_message == "no error spike, no new kind of error"
    assert len(webhook.received) == 1


def test_an_unreachable_store_skips_without_moving_on(webhook) -> None:
    sensor = build_log_alert_sensor(THRESHOLD, dg.DefaultSensorStatus.STOPPED)
    error_log = ErrorLogResource(store="postgres", dsn="postgresql://nobody@127.0.0.1:9/logs")
    resources = {"error_log": error_log, "notifier": NotifierResource(slack_webhook_url=webhook.url)}
    with dg.instance_for_test() as instance:
        result = sensor(
            dg.build_sensor_context(
                instance=instance, cursor='{"checked_until": "2026-11-30T00:00:00+00:00"}', resources=resources
            )
        )
    assert "the log store could not be read: cannot connect to the log store" in result.skip_reason.skip_message
    assert result.cursor is None and webhook.received == []
