"""Alertmanager for the shop: the rendered alertmanager.yml (routes, inhibition, receivers), secrets as files, a v2 API client.

`render_config` builds the configuration as data (yaml.safe_dump, no templates), like
prometheus.render_config. Routes go by `severity` and `environment`: a page from an environment
that pages (everything but staging by default) goes to the receiver `page`, everything else to
`ticket`; alerts are grouped by alertname and environment. Inhibition: an environment whose shop
is down (ShopTargetDown, ShopTargetMissing, RouterDown in infra/prometheus/rules/meta.yml) does
not also notify its SLO burn-rate alerts, and a page mutes a ticket of the same alertname and
environment. Both receivers deliver to the channels the pipeline's notifier uses
(shop_ops/resources/notifier.py: a Slack incoming webhook and e-mail over SMTP) plus optional
plain webhooks; the Slack URL and the SMTP password reach Alertmanager only as file paths
(`api_url_file`, `auth_password_file`), so the rendered text, which gets logged, holds no secret.
`delivery_from_env` reads the notifier's SHOP_OPS_* variables and, for a secret given only as a
variable, writes it to a 0600 file. `healthy`, `alerts`, `post_silence`, `expire_silence` and
`reload` talk to a running Alertmanager over its HTTP API.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import yaml

from shop_ops.observability.prometheus import duration

# The alerts (infra/prometheus/rules) that say an environment's shop is down or unreachable: while
# one fires for an environment, that environment's SLO burn-rate alerts are muted (inhibited).
ENVIRONMENT_DOWN_ALERTS = ("ShopTargetDown", "ShopTargetMissing", "RouterDown")
# The SLO alerts a down environment would otherwise also send (infra/prometheus/rules/shop-slo.yml).
ENVIRONMENT_SLO_ALERTS = (
    "ShopAvailabilityBudgetBurnFast",
    "ShopAvailabilityBudgetBurnSlow",
    "ShopLatencyBudgetBurnFast",
    "ShopLatencyBudgetBurnSlow",
)
GROUP_BY = ("alertname", "environment")
PAGE_RECEIVER = "page"
TICKET_RECEIVER = "ticket"
SLACK_URL_FILE = "slack-webhook-url"
SMTP_PASSWORD_FILE = "smtp-password"

# Message texts (Alertmanager's Go templates): each alert with its summary, its runbook and the
# Prometheus graph that fired it; the title links to the Alertmanager UI (Alertmanager's default).
_SUBJECT = (
    '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
    "{{ .CommonLabels.severity }} {{ .CommonLabels.alertname }} {{ .CommonLabels.environment }}"
)


def _alert_lines(runbook_base_url: str | None) -> str:
    runbook = "{{ .Annotations.runbook_url }}"
    if runbook_base_url:
        runbook = runbook_base_url.rstrip("/") + "/" + runbook
    return (
        "{{ range .Alerts }}"
        "{{ .Annotations.summary }}\n"
        f"Runbook: {runbook}\n"
        "Graph: {{ .GeneratorURL }}\n"
        "{{ end }}"
        "Silence or inspect: {{ .ExternalURL }}"
    )


class AlertmanagerApiError(RuntimeError):
    """Alertmanager's HTTP API did not answer as expected; the message says what it answered."""


@dataclass(frozen=True)
class EmailDelivery:
    """E-mail over SMTP, as the notifier sends it; the password only as a file Alertmanager reads."""

    smarthost: str  # host:port
    sender: str
    to: tuple[str, ...]
    username: str | None = None
    password_file: Path | None = None
    starttls: bool = False


@dataclass(frozen=True)
class Delivery:
    """Where notifications go: the Slack webhook (URL in a file), e-mail, and plain webhooks (e.g. a test's receiver)."""

    slack_api_url_file: Path | None = None
    slack_channel: str | None = None
    email: EmailDelivery | None = None
    webhook_urls: tuple[str, ...] = ()

    @property
    def channels(self) -> list[str]:
        found = ["slack"] if self.slack_api_url_file else []
        found += ["email"] if self.email else []
        return found + (["webhook"] if self.webhook_urls else [])


def _secret_file(folder: Path, name: str, value: str) -> Path:
    """`value` in folder/name, readable by its owner only (created 0600, never world-readable in between)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / name
    tmp = folder / f".{name}.tmp"
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    os.replace(tmp, path)
    return path


def _given_file(path: str, what: str, variable: str, folder: Path, name: str) -> Path:
    """A secret file named by `variable`: itself, or a trimmed 0600 copy when it ends in a newline.

    The notifier strips the file's content; Alertmanager 0.25 sends an SMTP password file's bytes
    as they are, so a trailing newline would be part of the password.
    """
    source = Path(path)
    try:
        content = source.read_text()
    except OSError as exc:
        raise ValueError(f"{what} file {path} (from {variable}) cannot be read: {exc.strerror}; fix the path") from None
    if not content.strip():
        raise ValueError(f"{what} file {path} (from {variable}) is empty: put the secret in it")
    if content == content.strip():
        return source.resolve()
    return _secret_file(folder, name, content.strip())


def delivery_from_env(
    secrets_dir: Path, environ: Mapping[str, str] = os.environ, webhook_urls: Sequence[str] = ()
) -> Delivery:
    """The notifier's channels (SHOP_OPS_* variables, see shop_ops/resources/notifier.py) for Alertmanager.

    A secret given as a file (SHOP_OPS_SLACK_WEBHOOK_URL_FILE, SHOP_OPS_SMTP_PASSWORD_FILE) is
    referenced where it is; one given only as a variable (SHOP_OPS_SLACK_WEBHOOK_URL,
    SHOP_OPS_SMTP_PASSWORD) is written to a 0600 file in `secrets_dir` (under the state folder),
    which the configuration then references. E-mail needs SHOP_OPS_SMTP_HOST and SHOP_OPS_SMTP_TO.
    """
    slack_file: Path | None = None
    if environ.get("SHOP_OPS_SLACK_WEBHOOK_URL_FILE"):
        slack_file = _given_file(
            environ["SHOP_OPS_SLACK_WEBHOOK_URL_FILE"], "Slack webhook URL", "SHOP_OPS_SLACK_WEBHOOK_URL_FILE",
            secrets_dir, SLACK_URL_FILE,
        )  # fmt: skip
    elif environ.get("SHOP_OPS_SLACK_WEBHOOK_URL"):
        slack_file = _secret_file(secrets_dir, SLACK_URL_FILE, environ["SHOP_OPS_SLACK_WEBHOOK_URL"].strip())
    email: EmailDelivery | None = None
    host = environ.get("SHOP_OPS_SMTP_HOST")
    to = tuple(a.strip() for a in (environ.get("SHOP_OPS_SMTP_TO") or "").split(",") if a.strip())
    if host and to:
        password_file: Path | None = None
        if environ.get("SHOP_OPS_SMTP_PASSWORD_FILE"):
            password_file = _given_file(
                environ["SHOP_OPS_SMTP_PASSWORD_FILE"], "SMTP password", "SHOP_OPS_SMTP_PASSWORD_FILE",
                secrets_dir, SMTP_PASSWORD_FILE,
            )  # fmt: skip
        elif environ.get("SHOP_OPS_SMTP_PASSWORD"):
            password_file = _secret_file(secrets_dir, SMTP_PASSWORD_FILE, environ["SHOP_OPS_SMTP_PASSWORD"].strip())
        try:
            port = int(environ.get("SHOP_OPS_SMTP_PORT") or 25)
        except ValueError:
            raise ValueError(
                f"SHOP_OPS_SMTP_PORT={environ.get('SHOP_OPS_SMTP_PORT')!r} is not a port number: set it to e.g. 25 or 587"
            ) from None
        email = EmailDelivery(
            smarthost=f"{host}:{port}",
            sender=environ.get("SHOP_OPS_SMTP_FROM") or f"shop-ops@{host}",
            to=to,
            username=environ.get("SHOP_OPS_SMTP_USER") or None,
            password_file=password_file,
            starttls=(environ.get("SHOP_OPS_SMTP_STARTTLS") or "0").lower() in ("1", "true", "yes")
            or (environ.get("SHOP_OPS_SMTP_TLS") or "").lower() == "starttls",  # the notifier's setting too
        )
    return Delivery(slack_api_url_file=slack_file, email=email, webhook_urls=tuple(webhook_urls))


def _receiver(name: str, delivery: Delivery, runbook_base_url: str | None) -> dict[str, Any]:
    receiver: dict[str, Any] = {"name": name}
    text = _alert_lines(runbook_base_url)
    if delivery.slack_api_url_file is not None:
        if not delivery.slack_api_url_file.is_absolute():
            raise ValueError(f"the Slack URL file {delivery.slack_api_url_file} must be an absolute path")
        slack: dict[str, Any] = {
            "send_resolved": True,
            "api_url_file": str(delivery.slack_api_url_file),
            "title": _SUBJECT,
            "text": text,
        }
        if delivery.slack_channel:
            slack["channel"] = delivery.slack_channel
        receiver["slack_configs"] = [slack]
    if delivery.email is not None:
        mail = delivery.email
        config: dict[str, Any] = {
            "send_resolved": True,
            "to": ", ".join(mail.to),
            "from": mail.sender,
            "smarthost": mail.smarthost,
            "require_tls": mail.starttls,
            "headers": {"Subject": _SUBJECT},
            "text": text,
        }
        if mail.username:
            config["auth_username"] = mail.username
        if mail.password_file is not None:
            if not mail.password_file.is_absolute():
                raise ValueError(f"the SMTP password file {mail.password_file} must be an absolute path")
            config["auth_password_file"] = str(mail.password_file)
        receiver["email_configs"] = [config]
    if delivery.webhook_urls:
        receiver["webhook_configs"] = [{"send_resolved": True, "url": url} for url in delivery.webhook_urls]
    return receiver


def _matcher_list(values: Sequence[str]) -> str:
    return "|".join(values)


def render_config(
    *,
    delivery: Delivery,
    group_wait_s: float = 30,
    group_interval_s: float = 300,
    page_repeat_interval_s: float = 3600,
    ticket_repeat_interval_s: float = 24 * 3600,
    quiet_environments: Sequence[str] = ("staging",),
    runbook_base_url: str | None = None,
    require_channel: bool = True,
) -> str:
    """alertmanager.yml as text.

    Route tree (alerts grouped by alertname and environment): `severity="page"` from an
    environment not in `quiet_environments` (alerts without an environment, e.g. Prometheus's own,
    included) goes to receiver `page`, repeated every `page_repeat_interval_s` while it fires;
    everything else (tickets, pages from a quiet environment, alerts without severity) to
    `ticket`, repeated every `ticket_repeat_interval_s`. `group_wait_s` is the wait before a new
    group's first notification, `group_interval_s` the wait before one about a changed group
    (tests use about 1 s). Inhibition: see the module docstring. Both receivers deliver through
    every channel of `delivery`. Messages carry each alert's summary, its runbook
    (`runbook_base_url` + the rule's `runbook_url` annotation, the annotation alone without a base)
    and its Prometheus graph (generatorURL); Alertmanager's external URL links to silences.
    Without any channel it is an error, unless `require_channel` is false (the local environment
    without Slack or SMTP settings: the alerts then show in Alertmanager's UI only).
    """
    if not delivery.channels and require_channel:
        raise ValueError(
            "no channel to deliver alerts to: set SHOP_OPS_SLACK_WEBHOOK_URL(_FILE) or SHOP_OPS_SMTP_HOST and "
            "SHOP_OPS_SMTP_TO (or give a webhook URL)"
        )
    route: dict[str, Any] = {
        "receiver": TICKET_RECEIVER,
        "group_by": list(GROUP_BY),
        "group_wait": duration(group_wait_s),
        "group_interval": duration(group_interval_s),
        "repeat_interval": duration(ticket_repeat_interval_s),
        "routes": [],
    }
    page_matchers = ['severity="page"']
    if quiet_environments:
        page_matchers.append(f'environment!~"{_matcher_list(quiet_environments)}"')
    route["routes"].append(
        {
            "receiver": PAGE_RECEIVER,
            "matchers": page_matchers,
            "repeat_interval": duration(page_repeat_interval_s),
        }
    )
    # Tickets and quiet pages fall through to the root route's receiver (`ticket`).
    inhibit_rules = [
        {
            "source_matchers": [f'alertname=~"{_matcher_list(ENVIRONMENT_DOWN_ALERTS)}"'],
            "target_matchers": [f'alertname=~"{_matcher_list(ENVIRONMENT_SLO_ALERTS)}"'],
            "equal": ["environment"],
        },
        {
            "source_matchers": ['severity="page"'],
            "target_matchers": ['severity="ticket"'],
            "equal": ["alertname", "environment"],
        },
    ]
    config: dict[str, Any] = {
        "route": route,
        "inhibit_rules": inhibit_rules,
        "receivers": [
            _receiver(PAGE_RECEIVER, delivery, runbook_base_url),
            _receiver(TICKET_RECEIVER, delivery, runbook_base_url),
        ],
    }
    return yaml.safe_dump(config, sort_keys=False)


# --- the v2 HTTP API ------------------------------------------------------------------------------------------


def _request(method: str, url: str, timeout: float, **kwargs: Any) -> httpx.Response:
    try:
        response = httpx.request(method, url, timeout=timeout, **kwargs)
    except httpx.TransportError as exc:
        raise AlertmanagerApiError(
            f"Alertmanager at {url} cannot be reached: {exc}; is it running (shop-ops local status)?"
        ) from exc
    if response.status_code >= 300:
        raise AlertmanagerApiError(
            f"Alertmanager {method} {url} answered {response.status_code}: {response.text[:500]}"
        )
    return response


def healthy(base_url: str, timeout: float = 5) -> bool:
    """GET /-/healthy answers 200 (False when it does not answer at all)."""
    try:
        return httpx.get(f"{base_url.rstrip('/')}/-/healthy", timeout=timeout).status_code == 200
    except httpx.TransportError:
        return False


def alerts(base_url: str, timeout: float = 10) -> list[dict[str, Any]]:
    """Every alert Alertmanager holds, silenced and inhibited ones included.

    Each with "labels", "annotations", "generatorURL", "receivers" and "status": {"state":
    "active" | "suppressed" | "unprocessed", "silencedBy": [ids], "inhibitedBy": [fingerprints]}.
    """
    response = _request("GET", f"{base_url.rstrip('/')}/api/v2/alerts", timeout)
    return list(response.json())


def post_silence(
    base_url: str,
    matchers: Mapping[str, str],
    duration_s: float,
    comment: str,
    created_by: str = "shop-ops",
    timeout: float = 10,
) -> str:
    """Silence the alerts whose labels equal `matchers` for `duration_s` seconds from now; the silence's id."""
    if not matchers:
        raise ValueError("a silence needs at least one matcher (label=value); an empty one would match nothing")
    if duration_s <= 0:
        raise ValueError(f"a silence must last a positive time, got {duration_s} s")
    now = datetime.now(UTC)
    body = {
        "matchers": [{"name": k, "value": v, "isRegex": False, "isEqual": True} for k, v in matchers.items()],
        "startsAt": now.isoformat(),
        "endsAt": (now + timedelta(seconds=duration_s)).isoformat(),
        "createdBy": created_by,
        "comment": comment,
    }
    response = _request("POST", f"{base_url.rstrip('/')}/api/v2/silences", timeout, json=body)
    return str(response.json()["silenceID"])


def expire_silence(base_url: str, silence_id: str, timeout: float = 10) -> None:
    """End a silence now."""
    _request("DELETE", f"{base_url.rstrip('/')}/api/v2/silence/{silence_id}", timeout)


def reload(base_url: str, timeout: float = 30) -> None:
    """Make Alertmanager re-read its configuration (POST /-/reload); AlertmanagerApiError if it rejects it."""
    _request("POST", f"{base_url.rstrip('/')}/-/reload", timeout)
