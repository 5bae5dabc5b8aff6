"""A real Alertmanager routes, groups, inhibits and silences the alerts of a real Prometheus running the repository's rules.

`amtool check-config` accepts the configuration shop_ops.observability.alertmanager renders from
the notifier's settings (Slack, e-mail, a webhook), and the rendered text holds no secret.
End to end: Prometheus (1 s scrape and evaluation) with the rule files of infra/prometheus/rules
(a copy of meta.yml whose ShopTargetDown waits 1 s instead of 1 m) scrapes a production shop
backend that nobody serves (a discovery file naming a free port); Alertmanager (Debian's
`prometheus-alertmanager`, 1 s group wait and interval) delivers to a local HTTP receiver, as a
plain webhook and as Slack (the URL read from a file), and to a local SMTP server (AUTH with the
password read from a 0600 file). The page arrives once per channel with its labels and links;
the environment's SLO alert and a ticket under a page are inhibited; a silence created through
the API holds back a new alert until it is expired.
"""

from __future__ import annotations

import json
import shutil
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shop_ops.observability import alertmanager as am
from shop_ops.observability import prometheus as prom
from shop_ops.services.discovery import write_shop_targets
from shop_ops.services.processes import AlertmanagerServer, PrometheusServer, ServiceError, free_port
from tests.support import wait_until

pytestmark = pytest.mark.services  # runs prometheus-alertmanager, amtool and prometheus, outside programs

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "infra" / "prometheus" / "rules"
SLACK_SECRET = "T000/B000/slack-very-secret-token"
SMTP_SECRET = "smtp-very-secret-password"
WAIT_S = 30
SETTLE_S = 3  # group intervals (1 s each) to wait for a notification that must not come


@dataclass
class Receiver:
    """A local HTTP server that keeps every JSON body POSTed to it, with its path."""

    url: str = ""
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def bodies(self, path: str) -> list[dict[str, Any]]:
        return [body for p, body in list(self.received) if p == path]

    def notifications(self, alertname: str, environment: str) -> list[dict[str, Any]]:
        """The webhook notifications of the group alertname+environment."""
        return [
            body
            for body in self.bodies("/hook")
            if body["groupLabels"] == {"alertname": alertname, "environment": environment}
        ]


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    found = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            found.received.append((self.path, json.loads(body)))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    found.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield found
    server.shutdown()
    server.server_close()


@dataclass
class Inbox:
    """An SMTP server's received messages and the logins it was offered (user, password)."""

    port: int = 0
    messages: list[str] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def authenticate(self, server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        assert isinstance(data, LoginPassword)
        self.logins.append((data.login.decode(), data.password.decode()))
        return AuthResult(success=data.password.decode() == SMTP_SECRET)

    def subjects(self) -> list[str]:
        return [
            line[len("Subject: ") :] for m in self.messages for line in m.splitlines() if line.startswith("Subject: ")
        ]


@pytest.fixture(scope="module")
def inbox() -> Iterator[Inbox]:
    """aiosmtpd on a free port, AUTH PLAIN without TLS (Go's SMTP client sends credentials in clear only to 127.0.0.1).

    LOGIN is left out: aiosmtpd's LOGIN challenge is not the "Username:" that Alertmanager expects.
    """
    found = Inbox(port=free_port())
    controller = Controller(
        found, hostname="127.0.0.1", port=found.port, authenticator=found.authenticate,
        auth_require_tls=False, auth_exclude_mechanism=["LOGIN"],
    )  # fmt: skip
    controller.start()
    yield found
    controller.stop()


@pytest.fixture(scope="session")
def amtool() -> str:
    path = shutil.which("amtool")
    if path is None:
        pytest.fail("amtool is not installed: run `make install` (Debian's `prometheus-alertmanager` package ships it)")
    return path


def notifier_env(tmp_path: Path) -> dict[str, str]:
    """The notifier's settings with every channel, the secrets as variables."""
    return {
        "SHOP_OPS_SLACK_WEBHOOK_URL": f"https://hooks.slack.com/services/{SLACK_SECRET}",
        "SHOP_OPS_SMTP_HOST": "127.0.0.1",
        "SHOP_OPS_SMTP_PORT": "2525",
        "SHOP_OPS_SMTP_FROM": "alerts@shop.example",
        "SHOP_OPS_SMTP_TO": "ops@shop.example, oncall@shop.example",
        "SHOP_OPS_SMTP_USER": "alerts",
        "SHOP_OPS_SMTP_PASSWORD": SMTP_SECRET,
        "SHOP_OPS_SMTP_STARTTLS": "1",
    }


def check_config(amtool: str, path: Path) -> None:
    result = subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr


def route_of(amtool: str, config: Path, *labels: str) -> str:
    """The receiver amtool's route test picks for an alert with these labels."""
    result = subprocess.run(
        [amtool, "config", "routes", "test", f"--config.file={config}", *labels],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_the_rendered_config_passes_amtool_and_holds_no_secret(tmp_path: Path, amtool: str) -> None:
    secrets = tmp_path / "state" / "alertmanager" / "secrets"
    delivery = am.delivery_from_env(secrets, notifier_env(tmp_path), webhook_urls=["http://127.0.0.1:9/hook"])
    assert delivery.channels == ["slack", "email", "webhook"]
    text = am.render_config(delivery=delivery, runbook_base_url="https://git.example.org/shop/-/blob/main")
    for secret in (SLACK_SECRET, SMTP_SECRET):
        assert secret not in text
    # The variables' secrets went to files only their owner can read, which the config names.
    for name, secret in ((am.SLACK_URL_FILE, f"https://hooks.slack.com/services/{SLACK_SECRET}"),
                         (am.SMTP_PASSWORD_FILE, SMTP_SECRET)):  # fmt: skip
        path = secrets / name
        assert path.read_text() == secret
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert str(path) in text
    config = yaml.safe_load(text)
    receivers = {r["name"]: r for r in config["receivers"]}
    assert list(receivers) == ["page", "ticket"]
    page = receivers["page"]
    assert page["slack_configs"][0]["api_url_file"] == str(secrets / am.SLACK_URL_FILE)
    assert "api_url" not in page["slack_configs"][0]
    email = page["email_configs"][0]
    assert email["auth_password_file"] == str(secrets / am.SMTP_PASSWORD_FILE)
    assert (email["to"], email["from"], email["smarthost"], email["auth_username"], email["require_tls"]) == (
        "ops@shop.example, oncall@shop.example", "alerts@shop.example", "127.0.0.1:2525", "alerts", True,
    )  # fmt: skip
    assert "https://git.example.org/shop/-/blob/main/{{ .Annotations.runbook_url }}" in email["text"]
    assert page["webhook_configs"] == [{"send_resolved": True, "url": "http://127.0.0.1:9/hook"}]
    assert config["route"]["group_by"] == ["alertname", "environment"]
    assert config["inhibit_rules"][0]["equal"] == ["environment"]
    assert config["inhibit_rules"][1]["equal"] == ["alertname", "environment"]
    path = tmp_path / "alertmanager.yml"
    path.write_text(text)
    check_config(amtool, path)
    # Routing by severity and environment, as Alertmanager itself resolves it.
    assert route_of(amtool, path, "severity=page", "environment=production", "alertname=X") == "page"
    assert route_of(amtool, path, "severity=page", "alertname=PrometheusNotConnectedToAlertmanager") == "page"
    assert route_of(amtool, path, "severity=page", "environment=staging", "alertname=X") == "ticket"
    assert route_of(amtool, path, "severity=ticket", "environment=production", "alertname=X") == "ticket"
    assert route_of(amtool, path, "alertname=X") == "ticket"


def test_secret_files_are_referenced_or_trimmed_and_errors_name_the_fix(tmp_path: Path, amtool: str) -> None:
    given = tmp_path / "given"
    given.mkdir()
    (given / "slack").write_text(f"https://hooks.slack.com/services/{SLACK_SECRET}")  # no newline: used as is
    (given / "smtp").write_text(SMTP_SECRET + "\n")  # a newline Alertmanager would send: a trimmed copy
    env = {
        "SHOP_OPS_SLACK_WEBHOOK_URL_FILE": str(given / "slack"),
        "SHOP_OPS_SMTP_HOST": "mail.example",
        "SHOP_OPS_SMTP_TO": "ops@shop.example",
        "SHOP_OPS_SMTP_PASSWORD_FILE": str(given / "smtp"),
    }
    secrets = tmp_path / "secrets"
    delivery = am.delivery_from_env(secrets, env)
    assert delivery.slack_api_url_file == given / "slack"
    assert delivery.email is not None
    assert delivery.email.password_file == secrets / am.SMTP_PASSWORD_FILE
    assert delivery.email.password_file.read_text() == SMTP_SECRET
    assert (delivery.email.smarthost, delivery.email.sender, delivery.email.starttls) == (
        "mail.example:25", "shop-ops@mail.example", False,
    )  # fmt: skip
    text = am.render_config(delivery=delivery)
    assert SLACK_SECRET not in text and SMTP_SECRET not in text
    (tmp_path / "alertmanager.yml").write_text(text)
    check_config(amtool, tmp_path / "alertmanager.yml")

    with pytest.raises(ValueError, match=r"SHOP_OPS_SLACK_WEBHOOK_URL_FILE\) cannot be read"):
        am.delivery_from_env(secrets, {"SHOP_OPS_SLACK_WEBHOOK_URL_FILE": str(given / "missing")})
    with pytest.raises(ValueError, match="no channel to deliver alerts to: set SHOP_OPS_SLACK_WEBHOOK_URL"):
        am.render_config(delivery=am.delivery_from_env(secrets, {}))


def test_the_inhibition_names_alerts_of_the_repository_rules() -> None:
    rules = {
        rule["alert"]: rule
        for path in RULES.glob("*.yml")
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    for name in (*am.ENVIRONMENT_DOWN_ALERTS, *am.ENVIRONMENT_SLO_ALERTS):
        assert name in rules, f"{name} is not an alert of infra/prometheus/rules: update alertmanager.py"
    assert {rules[name]["labels"]["severity"] for name in am.ENVIRONMENT_DOWN_ALERTS} == {"page"}


# --- end to end ---------------------------------------------------------------------------------------------


@dataclass
class Stack:
    prometheus: PrometheusServer
    alertmanager: AlertmanagerServer
    discovery: Path
    receiver: Receiver
    inbox: Inbox


def quick_rules(folder: Path) -> list[Path]:
    """The repository's rule files, with ShopTargetDown's `for: 1m` shortened to 1 s in a copy of meta.yml."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for path in sorted(RULES.glob("*.yml")):
        if path.name == "meta.yml":
            rules = yaml.safe_load(path.read_text())
            found = [r for g in rules["groups"] for r in g["rules"] if r.get("alert") == "ShopTargetDown"]
            assert len(found) == 1 and found[0]["for"] == "1m", "meta.yml's ShopTargetDown changed: update this test"
            found[0]["for"] = "1s"
            copy = folder / path.name
            copy.write_text(yaml.safe_dump(rules, sort_keys=False))
            paths.append(copy)
        else:
            paths.append(path)
    return paths


@pytest.fixture(scope="module")
def stack(receiver: Receiver, inbox: Inbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("alerting")
    # The notifier's settings: the Slack URL given as a file (Alertmanager reads it from there), the
    # SMTP password as a variable (written to a 0600 file under the state folder).
    slack_file = folder / "given-slack-url"
    slack_file.write_text(f"{receiver.url}/slack/{SLACK_SECRET}")
    slack_file.chmod(0o600)
    env = {
        "SHOP_OPS_SLACK_WEBHOOK_URL_FILE": str(slack_file), "SHOP_OPS_SMTP_HOST": "127.0.0.1",
        "SHOP_OPS_SMTP_PORT": str(inbox.port), "SHOP_OPS_SMTP_TO": "oncall@shop.example",
        "SHOP_OPS_SMTP_USER": "alerts", "SHOP_OPS_SMTP_PASSWORD": SMTP_SECRET,
    }  # fmt: skip
    delivery = am.delivery_from_env(folder / "state" / "secrets", env, webhook_urls=[f"{receiver.url}/hook"])
    am_config = folder / "alertmanager.yml"
    am_config.write_text(
        am.render_config(
            delivery=delivery, group_wait_s=1, group_interval_s=1, page_repeat_interval_s=3600,
            ticket_repeat_interval_s=3600, runbook_base_url="https://git.example.org/shop/-/blob/main",
        )
    )  # fmt: skip
    assert SLACK_SECRET not in am_config.read_text() and SMTP_SECRET not in am_config.read_text()
    alertmanager = AlertmanagerServer(datadir=folder / "alertmanager", port=free_port(), config=am_config)
    alertmanager.start()
    # A production backend that nobody serves: its scrape fails, ShopTargetDown fires.
    discovery = folder / "targets"
    write_shop_targets(discovery, "production", [("blue", f"127.0.0.1:{free_port()}")])
    port = free_port()
    prom_config = folder / "prometheus.yml"
    prom_config.write_text(
        prom.render_config(
            scrape_interval_s=1, evaluation_interval_s=1, rule_files=quick_rules(folder / "rules"),
            shop_targets_dir=discovery, alertmanagers=[f"127.0.0.1:{alertmanager.port}"],
            prometheus=f"127.0.0.1:{port}",
        )
    )  # fmt: skip
    prometheus = PrometheusServer(datadir=folder / "prometheus", port=port, config=prom_config, retention="1d")
    try:
        prometheus.start()
        yield Stack(prometheus, alertmanager, discovery, receiver, inbox)
    finally:
        prometheus.stop()
        alertmanager.stop()
    assert not alertmanager.running() and not prometheus.running()


def test_the_server_is_healthy_and_binds_only_its_web_port(stack: Stack) -> None:
    server = stack.alertmanager
    assert server.running()
    assert am.healthy(server.url)
    assert not am.healthy(f"http://127.0.0.1:{free_port()}")
    assert server.process is not None
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, timeout=10).stdout
    listening = [line.split()[3] for line in out.splitlines() if f"pid={server.process.pid}," in line]
    assert listening == [f"127.0.0.1:{server.port}"]  # no cluster port (9094) beside it


def test_a_down_backend_pages_once_with_its_labels_and_links(stack: Stack) -> None:
    receiver = stack.receiver
    first = wait_until(
        "the ShopTargetDown page at the webhook", lambda: receiver.notifications("ShopTargetDown", "production")
    )
    time.sleep(SETTLE_S)  # several group intervals: nothing new may come for the same firing alert
    notifications = receiver.notifications("ShopTargetDown", "production")
    assert len(notifications) == 1, notifications
    body = first[0]
    assert (body["receiver"], body["status"], body["externalURL"]) == ("page", "firing", stack.alertmanager.url)
    [alert] = body["alerts"]
    labels = alert["labels"]
    assert (labels["alertname"], labels["environment"], labels["severity"], labels["slot"], labels["job"]) == (
        "ShopTargetDown", "production", "page", "blue", "shop",
    )  # fmt: skip
    assert alert["annotations"]["runbook_url"] == "docs/runbooks/incidents.md#shoptargetdown"
    assert (ROOT / "docs" / "runbooks" / "incidents.md").read_text().count("\n## ShopTargetDown\n") == 1
    # The link back to the expression in Prometheus (its default external URL names this machine).
    assert f":{stack.prometheus.port}/graph?g0.expr=" in alert["generatorURL"]
    # The same notification went to the Slack webhook, whose URL Alertmanager read from the file.
    slack = [b for b in receiver.bodies(f"/slack/{SLACK_SECRET}") if "ShopTargetDown" in json.dumps(b)]
    assert len(slack) == 1, slack
    attachment = slack[0]["attachments"][0]
    assert attachment["title"] == "[FIRING:1] page ShopTargetDown production"
    assert attachment["title_link"].startswith(stack.alertmanager.url)
    assert (
        "Runbook: https://git.example.org/shop/-/blob/main/docs/runbooks/incidents.md#shoptargetdown"
        in attachment["text"]
    )
    assert "/graph?g0.expr=" in attachment["text"]
    # And by e-mail, logged in with the password Alertmanager read from its file.
    subject = "[FIRING:1] page ShopTargetDown production"
    wait_until("the e-mail", lambda: subject in stack.inbox.subjects(), timeout=5)
    assert stack.inbox.subjects().count(subject) == 1
    assert stack.inbox.logins and set(stack.inbox.logins) == {("alerts", SMTP_SECRET)}


def post_alerts(base_url: str, *label_sets: dict[str, str]) -> None:
    """Alerts sent straight to Alertmanager's v2 API, as Prometheus sends them."""
    now = datetime.now(UTC)
    body = [{"labels": labels, "annotations": {"summary": "test"}, "startsAt": now.isoformat(),
             "endsAt": (now + timedelta(minutes=5)).isoformat()} for labels in label_sets]  # fmt: skip
    assert httpx.post(f"{base_url}/api/v2/alerts", json=body, timeout=10).status_code == 200


def held(base_url: str, alertname: str, environment: str) -> dict[str, Any] | None:
    """The alert Alertmanager holds with these labels, once it has processed it."""
    for alert in am.alerts(base_url):
        labels = alert["labels"]
        if labels.get("alertname") == alertname and labels.get("environment") == environment:
            return alert if alert["status"]["state"] != "unprocessed" else None
    return None


def test_a_down_environment_does_not_also_page_for_its_latency(stack: Stack) -> None:
    # Needs the production ShopTargetDown firing (the test before waits for it).
    wait_until(
        "ShopTargetDown production in Alertmanager",
        lambda: held(stack.alertmanager.url, "ShopTargetDown", "production"),
    )
    url, receiver = stack.alertmanager.url, stack.receiver
    post_alerts(
        url,
        {"alertname": "ShopLatencyBudgetBurnFast", "environment": "production", "severity": "page", "slo": "latency"},
        {"alertname": "ShopLatencyBudgetBurnFast", "environment": "staging", "severity": "page", "slo": "latency"},
    )
    arrived = wait_until(
        "ShopLatencyBudgetBurnFast staging", lambda: receiver.notifications("ShopLatencyBudgetBurnFast", "staging")
    )
    assert arrived[0]["receiver"] == "ticket"  # staging does not page
    inhibited = wait_until("the production one held", lambda: held(url, "ShopLatencyBudgetBurnFast", "production"))
    assert inhibited["status"]["state"] == "suppressed" and inhibited["status"]["inhibitedBy"], inhibited
    time.sleep(SETTLE_S)
    assert receiver.notifications("ShopLatencyBudgetBurnFast", "production") == []


def test_a_page_mutes_the_ticket_of_the_same_alert(stack: Stack) -> None:
    url, receiver = stack.alertmanager.url, stack.receiver
    post_alerts(
        url,
        {"alertname": "ProbeBoth", "environment": "production", "severity": "page"},
        {"alertname": "ProbeBoth", "environment": "production", "severity": "ticket"},
    )
    [body] = wait_until("ProbeBoth production", lambda: receiver.notifications("ProbeBoth", "production"))
    assert [a["labels"]["severity"] for a in body["alerts"]] == ["page"]
    time.sleep(SETTLE_S)
    assert len(receiver.notifications("ProbeBoth", "production")) == 1


def test_a_silence_holds_back_a_new_alert_until_it_expires(stack: Stack) -> None:
    url, receiver = stack.alertmanager.url, stack.receiver
    silence = am.post_silence(
        url, {"alertname": "ShopTargetDown", "environment": "staging"}, 600, "drill: staging down"
    )
    # Now staging's backend goes down too: Prometheus fires, Alertmanager holds it silenced.
    write_shop_targets(stack.discovery, "staging", [("green", f"127.0.0.1:{free_port()}")])
    alert = wait_until("ShopTargetDown staging in Alertmanager", lambda: held(url, "ShopTargetDown", "staging"))
    assert alert["status"]["state"] == "suppressed" and alert["status"]["silencedBy"] == [silence], alert
    time.sleep(SETTLE_S)
    assert receiver.notifications("ShopTargetDown", "staging") == []
    # The page sent earlier for production is not repeated either (repeat interval 1 h).
    assert len(receiver.notifications("ShopTargetDown", "production")) == 1
    am.expire_silence(url, silence)
    [body] = wait_until(
        "ShopTargetDown staging after the silence", lambda: receiver.notifications("ShopTargetDown", "staging")
    )
    assert body["alerts"][0]["labels"]["slot"] == "green"


def test_api_and_start_errors_name_cause_and_fix(stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(am.AlertmanagerApiError, match="cannot be reached"):
        am.alerts(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(am.AlertmanagerApiError, match="answered 400"):
        am.post_silence(stack.alertmanager.url, {"alertname": ""}, 60, "empty value")
    with pytest.raises(ValueError, match="at least one matcher"):
        am.post_silence(stack.alertmanager.url, {}, 60, "nothing")
    second = AlertmanagerServer(
        datadir=tmp_path / "second", port=stack.alertmanager.port, config=stack.alertmanager.config
    )
    with pytest.raises(ServiceError, match=f"port {stack.alertmanager.port} for Alertmanager is already in use"):
        second.start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ServiceError, match="install Debian's prometheus-alertmanager package"):
        second.start()
    assert second.process is None
