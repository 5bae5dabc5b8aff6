"""The notifier: Slack webhook and SMTP against real local servers; a no-op that says so when nothing is configured."""

from __future__ import annotations

import logging

import pytest

from shop_ops.resources.notifier import NotifyError, notifier_from_env


def test_nothing_configured_is_a_logged_no_op(caplog):
    with caplog.at_level(logging.WARNING):
        assert notifier_from_env({}).notifier().send("deploy failed", "details") == []
    assert "no Slack webhook or SMTP server configured; not sent: deploy failed" in caplog.text


def test_slack_from_secret_file_and_email(tmp_path, webhook, smtp):
    port, inbox = smtp
    url_file = tmp_path / "slack-url"
    url_file.write_text(webhook.url + "\n")
    env = {
        "SHOP_OPS_SLACK_WEBHOOK_URL_FILE": str(url_file),
        "SHOP_OPS_SMTP_HOST": "127.0.0.1",
        "SHOP_OPS_SMTP_PORT": str(port),
        "SHOP_OPS_SMTP_TO": "ops@example.test, oncall@example.test",
    }
    notifier = notifier_from_env(env).notifier()
    assert "secret-token" not in repr(notifier)
    assert notifier.send("release 1.2.3 on staging", "verified") == ["slack", "email"]
    assert webhook.received == [{"text": "*release 1.2.3 on staging*\nverified"}]
    assert len(inbox.messages) == 1
    assert "Subject: release 1.2.3 on staging" in inbox.messages[0]
    assert "oncall@example.test" in inbox.messages[0]


def test_failed_channel_raises_without_the_webhook_secret(webhook, smtp, monkeypatch):
    port, inbox = smtp
    webhook.status = 500
    env = {"SHOP_OPS_SLACK_WEBHOOK_URL": webhook.url, "SHOP_OPS_SMTP_HOST": "127.0.0.1",
           "SHOP_OPS_SMTP_PORT": str(port), "SHOP_OPS_SMTP_TO": "ops@example.test"}  # fmt: skip
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    resource = notifier_from_env()
    # The webhook URL is an EnvVar: Dagster resolves it where the run executes; the config shows only its name.
    assert webhook.url not in repr(resource) and "SHOP_OPS_SLACK_WEBHOOK_URL" in repr(resource)
    with pytest.raises(NotifyError, match="slack: NotifyError: webhook answered HTTP 500") as err:
        resource.process_config_and_initialize().notifier().send("backup failed", "disk full")
    assert "secret-token" not in str(err.value)
    assert len(inbox.messages) == 1  # the other channel still got it
