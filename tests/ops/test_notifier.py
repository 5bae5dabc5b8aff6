"""The notifier: Slack webhook and SMTP against real local servers; a no-op that says so when nothing is configured."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from shop_ops.localstack.processes import free_port
from shop_ops.resources.notifier import Notifier, NotifyError


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook() -> Iterator[type[_Hook]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/services/T000/B000/secret-token"
    yield handler
    server.shutdown()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()


def test_nothing_configured_is_a_logged_no_op(caplog):
    with caplog.at_level(logging.WARNING):
        assert Notifier.from_env({}).send("deploy failed", "details") == []
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
    notifier = Notifier.from_env(env)
    assert "secret-token" not in repr(notifier)
    assert notifier.send("release 1.2.3 on staging", "verified") == ["slack", "email"]
    assert webhook.received == [{"text": "*release 1.2.3 on staging*\nverified"}]
    assert len(inbox.messages) == 1
    assert "Subject: release 1.2.3 on staging" in inbox.messages[0]
    assert "oncall@example.test" in inbox.messages[0]


def test_failed_channel_raises_without_the_webhook_secret(webhook, smtp):
    port, inbox = smtp
    webhook.status = 500
    env = {"SHOP_OPS_SLACK_WEBHOOK_URL": webhook.url, "SHOP_OPS_SMTP_HOST": "127.0.0.1",
           "SHOP_OPS_SMTP_PORT": str(port), "SHOP_OPS_SMTP_TO": "ops@example.test"}  # fmt: skip
    with pytest.raises(NotifyError, match="slack: NotifyError: webhook answered HTTP 500") as err:
        Notifier.from_env(env).send("backup failed", "disk full")
    assert "secret-token" not in str(err.value)
    assert len(inbox.messages) == 1  # the other channel still got it
