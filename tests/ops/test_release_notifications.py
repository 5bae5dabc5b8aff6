"""Deployment notifications: their messages, that the flow emits each event once as the ledger records it,
and the Dagster wiring (run link, run tag) that keeps run_failure_alert_sensor from announcing a release twice.

The flow runs over test_release_flow's recording strategy and a real SQLite ledger; messages go through the
real notifier to a local webhook receiver; the Dagster parts run in a temp instance. The whole path through
a live stack (sensor-launched releases, promotion, rollback) is test_localenv.py's `test_up_status_down_up`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.deployments import deployments
from shop_ops.release.flow import DeployFailed, DeployRefused, Log, StepFailed, Strategy, deploy, rollback
from shop_ops.release.notifications import (
    ReleaseEvent,
    ReleaseNotices,
    already_announced,
    build_release_notice,
    release_notice_tag,
)
from shop_ops.release.targets import ReleaseTarget
from shop_ops.resources.k6 import K6Resource
from shop_ops.resources.ledger import LedgerResource, ReleaseLedger
from shop_ops.resources.notifier import Notifier, NotifierResource
from shop_ops.resources.registry import RegistryResource
from shop_ops.security.secrets import SecretsResource
from shop_ops.sensors.run_failure_alerts import build_run_failure_alert_sensor
from shop_ops.services.processes import free_port
from tests.ops.conftest import WEBHOOK_TOKEN
from tests.ops.test_release_flow import V1, V2, Recorder, fails, passes

UI = "http://ui.example.test:3000"
RUN = f"{UI}/runs/r-1"


def fields(text: str) -> dict[str, str]:
    """The `Name: value` lines of a notice (up to the blank line before the reason)."""
    head = text.split("\n\n", 1)[0]
    return dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)


# --- the messages ---------------------------------------------------------------------------------------


def test_a_verified_release_names_everything_people_need():
    event = ReleaseEvent(
        kind="verified", action="deploy", environment="staging", version="1.2.0",
        backend_digest=V1.backend_digest, frontend_digest=V1.frontend_digest, release_id="staging-1",
        previous_version="1.1.0", previous_release_id="staging-0",
        verification={"k6_p95_ms": 41.23456789, "k6_error_rate": 0.0, "k6_requests": 412.0},
        reason="verified through http://127.0.0.1:8081",
    )  # fmt: skip
    notice = build_release_notice(event, RUN)
    assert notice.subject == "[shop-ops] release verified: staging 1.2.0"
    assert fields(notice.text) == {
        "Event": "verified",
        "Action": "deploy",
        "Environment": "staging",
        "Version": "1.2.0",
        "Backend digest": V1.backend_digest,
        "Frontend digest": V1.frontend_digest,
        "Release id": "staging-1",
        "Serving before": "1.1.0 (staging-0)",
        "Verification": "k6_p95_ms=41.2346, k6_error_rate=0, k6_requests=412",
        "Run": RUN,
    }  # no approver line: staging needs none
    assert notice.text.endswith("\n\nReason:\nverified through http://127.0.0.1:8081")


def test_production_names_its_approver_and_a_refusal_says_nothing_was_recorded():
    promoted = ReleaseEvent("promoted", "deploy", "production", "1.2.0", release_id="production-1", approved_by="ada")
    notice = build_release_notice(promoted, RUN)
    assert notice.subject == "[shop-ops] release promoted: production 1.2.0 (approved by ada)"
    assert fields(notice.text)["Approved by"] == "ada"

    refused = ReleaseEvent(
        "refused", "deploy", "production", "1.2.0", V1.backend_digest, V1.frontend_digest,
        reason="production deploy of 1.2.0 refused: approved_by is required (who approved it)",
    )  # fmt: skip
    text = build_release_notice(refused, RUN).text
    assert fields(text)["Approved by"] == "- (none given)"
    assert fields(text)["Release id"] == "- (refused before anything changed: no ledger row)"
    assert "approved_by is required" in text


def test_the_two_kinds_of_rollback_read_differently():
    automatic = ReleaseEvent(
        "rolled_back", "deploy", "staging", "1.3.0", release_id="staging-2", previous_version="1.2.0",
        previous_release_id="staging-1", reason="verification failed: /version answered 1.2.0",
    )  # fmt: skip
    assert (
        build_release_notice(automatic, RUN).subject == "[shop-ops] release rolled back: staging 1.3.0, back on 1.2.0"
    )
    assert automatic.ends_in_failure
    job = ReleaseEvent(
        "rolled_back", "rollback", "staging", "1.2.0", release_id="staging-3", previous_version="1.3.0",
        previous_release_id="staging-2",
    )  # fmt: skip
    notice = build_release_notice(job, RUN)
    assert notice.subject == "[shop-ops] release rolled back: staging back on 1.2.0 (from 1.3.0)"
    assert fields(notice.text)["Rolled back from"] == "1.3.0 (staging-2)" and not job.ends_in_failure


def test_reasons_are_redacted_and_unknown_kinds_refused():
    event = ReleaseEvent(
        "failed", "deploy", "staging", "1.2.0", release_id="staging-1",
        reason="migration failed: could not connect to postgresql://shop:hunter2@db/shop",
    )  # fmt: skip
    text = build_release_notice(event, RUN, secrets=["hunter2"]).text
    assert "postgresql://shop:***@db/shop" in text and "hunter2" not in text
    with pytest.raises(ValueError, match="unknown release event 'deployed'"):
        ReleaseEvent("deployed", "deploy", "staging", "1.2.0")


def test_already_announced_needs_every_failed_step_tagged():
    tags = {release_notice_tag("production__deployment"): "refused", "environment": "production"}
    assert already_announced(tags, ["production__deployment"])
    assert not already_announced(tags, ["production__deployment", "production__load_test_baseline"])
    assert not already_announced(tags, [])  # the run itself died: nobody announced that


# --- the flow: each event once, agreeing with the ledger --------------------------------------------------


@pytest.fixture
def ledger(tmp_path: Path) -> ReleaseLedger:
    return ReleaseLedger(tmp_path)


def test_each_deploy_outcome_is_announced_once_with_its_ledger_row(ledger):
    heard: list[ReleaseEvent] = []
    first = deploy("staging", V1, Recorder(ledger), verify=passes, notify=heard.append)
    assert [(e.kind, e.release_id) for e in heard] == [("started", first.release_id), ("verified", first.release_id)]
    assert heard[1].verification == ledger.get(first.release_id).measures == {"k6_p95_ms": 12.5}

    heard.clear()
    with pytest.raises(DeployRefused):
        deploy("production", V1, Recorder(ledger), verify=passes, notify=heard.append)
    [refused] = heard
    assert (refused.kind, refused.release_id, refused.version, refused.backend_digest) == (
        "refused", "", "1.0.0", V1.backend_digest,
    )  # fmt: skip
    assert "approved_by is required" in refused.reason and ledger.history("production") == []

    heard.clear()
    promoted = deploy("production", V1, Recorder(ledger), verify=passes, approved_by="ada", notify=heard.append)
    assert [(e.kind, e.approved_by) for e in heard] == [("started", "ada"), ("promoted", "ada")]
    assert {e.release_id for e in heard} == {promoted.release_id}

    heard.clear()
    with pytest.raises(DeployFailed):
        deploy("staging", V2, Recorder(ledger), verify=fails, notify=heard.append)
    started, rolled = heard
    row = ledger.get(rolled.release_id)
    assert (started.kind, rolled.kind, rolled.action, row.status) == ("started", "rolled_back", "deploy", "rolled_back")
    assert (rolled.previous_version, rolled.previous_release_id) == ("1.0.0", first.release_id)
    assert "verification failed" in rolled.reason and rolled.reason == row.reason and rolled.ends_in_failure

    heard.clear()
    broken = Recorder(ledger, fail={"migrate": StepFailed("shop-migrate exited 1")})
    with pytest.raises(DeployFailed):
        deploy("staging", V2, broken, verify=passes, notify=heard.append)
    assert [e.kind for e in heard] == ["started", "failed"]
    assert ledger.get(heard[1].release_id).status == "failed"

    heard.clear()
    held = Recorder(ledger, fail={"lock": DeployRefused("another deploy of staging is running")})
    with pytest.raises(DeployRefused):
        deploy("staging", V2, held, verify=passes, notify=heard.append)
    assert [(e.kind, e.reason) for e in heard] == [("refused", "another deploy of staging is running")]


def test_each_rollback_outcome_is_announced_once_with_its_ledger_row(ledger):
    heard: list[ReleaseEvent] = []
    with pytest.raises(DeployRefused):
        rollback("staging", Recorder(ledger), notify=heard.append)
    assert [(e.kind, e.action, e.version) for e in heard] == [("refused", "rollback", "")]

    first = deploy("staging", V1, Recorder(ledger), verify=passes)
    second = deploy("staging", V2, Recorder(ledger), verify=passes)
    heard.clear()
    result = rollback("staging", Recorder(ledger), reason="checkout errors", notify=heard.append)
    [event] = heard
    assert (event.kind, event.action, event.release_id, event.version) == (
        "rolled_back",
        "rollback",
        result.release_id,
        "1.0.0",
    )
    assert (event.backend_digest, event.frontend_digest) == (first.backend_digest, first.frontend_digest)
    assert (event.previous_version, event.previous_release_id) == ("2.0.0", second.release_id)
    assert ledger.get(second.release_id).status == "rolled_back" and ledger.get(result.release_id).kind == "rollback"

    deploy("staging", V2, Recorder(ledger), verify=passes)
    heard.clear()
    with pytest.raises(DeployFailed):
        rollback("staging", Recorder(ledger, fail={"restore": StepFailed("blue never ready")}), notify=heard.append)
    assert [(e.kind, e.action, ledger.get(e.release_id).status) for e in heard] == [("failed", "rollback", "failed")]


def test_a_notify_that_raises_never_fails_the_release(ledger):
    lines: list[str] = []

    def broken(event: ReleaseEvent) -> None:
        raise RuntimeError("posting to postgresql://u:hunter2@x/y failed")

    strategy = Recorder(ledger)
    strategy.log = lines.append  # type: ignore[method-assign]
    assert deploy("staging", V1, strategy, verify=passes, notify=broken).status == "verified"
    warnings = [line for line in lines if line.startswith("warning: release notice")]
    assert len(warnings) == 2 and "hunter2" not in "".join(warnings)  # started, verified


# --- the sender: the real notifier to a local receiver ----------------------------------------------------


def test_notices_reach_the_webhook_and_a_failing_channel_is_one_redacted_warning(webhook):
    warnings: list[str] = []
    event = ReleaseEvent("verified", "deploy", "staging", "1.2.0", release_id="staging-1")
    notices = ReleaseNotices(Notifier(slack_webhook_url=webhook.url).send, RUN, warnings.append)
    notices(event)
    [post] = webhook.received
    assert post["text"].startswith("*[shop-ops] release verified: staging 1.2.0*\nEvent: verified\n")
    assert notices.announced == [event] and warnings == []

    webhook.status = 500
    refused = ReleaseEvent("refused", "deploy", "production", "1.2.0", reason="approved_by is required")
    notices(refused)
    down = f"http://127.0.0.1:{free_port()}/services/{WEBHOOK_TOKEN}"
    ReleaseNotices(Notifier(slack_webhook_url=down).send, RUN, warnings.append)(refused)
    assert len(warnings) == 2 and notices.announced_failure() is None
    assert "release notice 'refused' for production 1.2.0 not sent (NotifyError: slack: " in warnings[0]
    assert WEBHOOK_TOKEN not in "".join(warnings)


# --- the Dagster wiring: run link, run tag, and the failure sensor's silence ------------------------------


class RecordingTarget(ReleaseTarget):
    """The release flow over the recording strategy: a real ledger, no containers; verified by the real verifier."""

    def strategy(self, environment: str, log: Log) -> Strategy:
        return Recorder(self.ledger.open())

    def url(self, environment: str) -> str:
        return "http://127.0.0.1:1"


@pytest.fixture
def instance(tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    (tmp_path / "dagster").mkdir()
    with dg.instance_for_test(temp_dir=str(tmp_path / "dagster")) as inst:
        yield inst


def test_a_refused_or_rolled_back_run_is_announced_once_not_again_by_the_failure_sensor(tmp_path, instance, webhook):
    notifier = NotifierResource(slack_webhook_url=webhook.url, ui_url=UI)
    target = RecordingTarget(
        registry=RegistryResource(url="http://127.0.0.1:1"), ledger=LedgerResource(state_dir=str(tmp_path)),
        k6=K6Resource(),
    )  # fmt: skip
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "staging-db-password").write_text("staging-database-password")  # the deploy reads it first
    (secrets / "staging-db-password").chmod(0o600)
    resources = {"release_target": target, "notifier": notifier, "secrets": SecretsResource(folder=str(secrets))}
    sensor = build_run_failure_alert_sensor(dg.DefaultSensorStatus.RUNNING)

    def tick(cursor: str | None) -> dg.SensorResult:
        context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"notifier": notifier})
        return sensor.evaluate_tick(context)

    cursor = tick(None).cursor
    production = next(a for a in deployments if a.key == dg.AssetKey(["production", "deployment"]))
    staging = next(a for a in deployments if a.key == dg.AssetKey(["staging", "deployment"]))
    release = {"version": "1.0.0", "backend_digest": V1.backend_digest, "frontend_digest": V1.frontend_digest}
    refused = dg.materialize(
        [production], instance=instance, resources=resources, raise_on_error=False,
        run_config={"ops": {"production__deployment": {"config": release}}},
    )  # fmt: skip
    # Staging through the real verifier: nothing answers at 127.0.0.1:1, so it goes back (rolled back).
    rolled = dg.materialize(
        [staging], instance=instance, resources=resources, raise_on_error=False,
        run_config={"ops": {"staging__deployment": {"config": release}}},
    )  # fmt: skip
    assert not refused.success and not rolled.success
    subjects = [post["text"].split("\n", 1)[0] for post in webhook.received]
    assert subjects == [
        "*[shop-ops] release refused: production 1.0.0*",
        "*[shop-ops] release started: staging 1.0.0*",
        "*[shop-ops] release rolled back: staging 1.0.0*",
    ]
    [row] = ReleaseLedger(tmp_path).history()
    assert fields(webhook.received[2]["text"])["Release id"] == row["release_id"] and row["status"] == "rolled_back"
    assert fields(webhook.received[0]["text"])["Run"] == f"{UI}/runs/{refused.run_id}"
    assert fields(webhook.received[2]["text"])["Run"] == f"{UI}/runs/{rolled.run_id}"
    tags = instance.get_run_by_id(refused.run_id).tags
    assert tags[release_notice_tag("production__deployment")] == "refused"
    assert instance.get_run_by_id(rolled.run_id).tags[release_notice_tag("staging__deployment")] == "rolled_back"

    # A refusal whose notice did not get through (the receiver answers 500): no tag, so the sensor announces it.
    webhook.status = 500
    unheard = dg.materialize(
        [production], instance=instance, resources=resources, raise_on_error=False,
        run_config={"ops": {"production__deployment": {"config": release}}},
    )  # fmt: skip
    assert not any(key.startswith("shop-ops/release-notice/") for key in instance.get_run_by_id(unheard.run_id).tags)
    webhook.status = 200
    webhook.received.clear()
    result = tick(cursor)
    reacted = [r.dagster_run.run_id for r in result.dagster_run_reactions]
    assert reacted == [refused.run_id, rolled.run_id, unheard.run_id]
    assert all(r.error is None for r in result.dagster_run_reactions)
    [alert] = webhook.received  # the two announced runs get no second message
    assert alert["text"].startswith("*[shop-ops] run failed: ") and f"/runs/{unheard.run_id}" in alert["text"]
