"""Notifications to people: a Slack incoming webhook and/or e-mail over SMTP, configured from env and secret files.

`Notifier` is the plain sender; `NotifierResource` its Dagster resource, configured by fields
(`definitions.py` builds it with `notifier_from_env`). The webhook URL and the SMTP password are
secrets: only from environment variables (`dg.EnvVar`, resolved where the run executes, never shown
in the UI) or files, never plain config values. With nothing configured, `send` is a no-op that
says so in the log.

Environment: SHOP_OPS_UI_URL (the links' target), SHOP_OPS_SLACK_WEBHOOK_URL or SHOP_OPS_SLACK_WEBHOOK_URL_FILE; SHOP_OPS_SMTP_HOST,
SHOP_OPS_SMTP_PORT (25), SHOP_OPS_SMTP_FROM, SHOP_OPS_SMTP_TO (comma-separated),
SHOP_OPS_SMTP_USER, SHOP_OPS_SMTP_PASSWORD or SHOP_OPS_SMTP_PASSWORD_FILE, SHOP_OPS_SMTP_TLS (starttls,
implicit or none; SHOP_OPS_SMTP_STARTTLS=1 means starttls, port 465 implicit), SHOP_OPS_SMTP_CA_FILE (the CA
bundle that signs the server's certificate; default: the system's).

SMTP logs in only over TLS: credentials without TLS are refused when configured, and a server that
does not offer STARTTLS fails the send (never a plain-text login). The webhook URL and the SMTP
password are refused if they are placeholders and are remembered by the one redactor
(shop_ops/services/redaction.py), so no log, error or alert carries them.
"""

from __future__ import annotations

import logging
import os
import smtplib
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import httpx
from pydantic import Field

from shop_ops.services.redaction import PlaceholderSecretError, accept_secret, redact

_log = logging.getLogger(__name__)
DEFAULT_UI_URL = "http://127.0.0.1:3000"


class NotifyError(RuntimeError):
    """A configured channel failed (the message names the channel, never the secret)."""


@dataclass(frozen=True)
class Notifier:
    slack_webhook_url: str | None = field(default=None, repr=False)
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    smtp_implicit_tls: bool = False  # TLS from the first byte (SMTPS, port 465)
    smtp_ca_file: str | None = None  # the CA bundle that signs the server's certificate (default: the system's)
    timeout: float = 10

    def __post_init__(self) -> None:
        if (self.smtp_user or self.smtp_password) and not (self.smtp_starttls or self.smtp_implicit_tls):
            raise NotifyError(NO_TLS_WITH_CREDENTIALS)
        try:
            for name, value in (("SHOP_OPS_SLACK_WEBHOOK_URL", self.slack_webhook_url),
                                ("SHOP_OPS_SMTP_PASSWORD", self.smtp_password)):  # fmt: skip
                if value is not None:
                    accept_secret(name, value)
        except PlaceholderSecretError as exc:
            raise NotifyError(str(exc)) from None

    @property
    def channels(self) -> list[str]:
        found = []
        if self.slack_webhook_url:
            found.append("slack")
        if self.smtp_host and self.smtp_to:
            found.append("email")
        return found

    def send(self, subject: str, text: str, logger: logging.Logger | None = None) -> list[str]:
        """Send to every configured channel; returns the channels that got it. NotifyError if any failed."""
        log = logger or _log
        if not self.channels:
            log.warning("notifier: no Slack webhook or SMTP server configured; not sent: %s", subject)
            return []
        sent, errors = [], []
        for channel in self.channels:
            try:
                self._slack(subject, text) if channel == "slack" else self._email(subject, text)
                sent.append(channel)
            except (httpx.HTTPError, OSError, smtplib.SMTPException, NotifyError) as exc:
                # The webhook URL carries its token: name the channel, not the URL.
                errors.append(f"{channel}: {type(exc).__name__}: {redact(str(exc), self.secrets)}")
        log.info("notifier: sent %r to %s", subject, ", ".join(sent) or "nothing")
        if errors:
            raise NotifyError("; ".join(errors))
        return sent

    @property
    def secrets(self) -> tuple[str | None, ...]:
        return (self.slack_webhook_url, self.smtp_password)

    def _slack(self, subject: str, text: str) -> None:
        assert self.slack_webhook_url
        response = httpx.post(self.slack_webhook_url, json={"text": f"*{subject}*\n{text}"}, timeout=self.timeout)
        if response.status_code >= 300:
            raise NotifyError(f"webhook answered HTTP {response.status_code}")

    def _email(self, subject: str, text: str) -> None:
        message = EmailMessage()
        message["Subject"] = subject
        message["From"] = self.smtp_from or f"shop-ops@{self.smtp_host}"
        message["To"] = ", ".join(self.smtp_to)
        message.set_content(text)
        where = f"{self.smtp_host}:{self.smtp_port}"
        context = ssl.create_default_context(cafile=self.smtp_ca_file)
        if self.smtp_implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                self.smtp_host or "", self.smtp_port, timeout=self.timeout, context=context
            )
        else:
            smtp = smtplib.SMTP(self.smtp_host or "", self.smtp_port, timeout=self.timeout)
        with smtp:
            if self.smtp_starttls and not self.smtp_implicit_tls:
                smtp.ehlo()
                if not smtp.has_extn("starttls"):
                    raise NotifyError(
                        f"SMTP server {where} does not offer STARTTLS: nothing sent, no plain-text login; "
                        "enable STARTTLS on the server or use SHOP_OPS_SMTP_TLS=implicit (port 465)"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.smtp_user and self.smtp_password:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(message)


def _read_secret(path: str | None, what: str) -> str | None:
    if not path:
        return None
    try:
        return Path(path).read_text().strip() or None
    except OSError as exc:
        raise NotifyError(f"{what} file {path}: {exc.strerror}") from None


NO_TLS_WITH_CREDENTIALS = (
    "SMTP credentials (SHOP_OPS_SMTP_USER / SHOP_OPS_SMTP_PASSWORD) are configured without TLS: set "
    "SHOP_OPS_SMTP_TLS=starttls (or implicit, port 465); the password is never sent in plain text"
)


class NotifierResource(dg.ConfigurableResource):
    """Slack and e-mail, configured by fields; each secret as a file path or a `dg.EnvVar` (never a plain value in config)."""

    slack_webhook_url: str | None = None
    slack_webhook_url_file: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: list[str] = Field(default_factory=list)
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_password_file: str | None = None
    smtp_starttls: bool = False
    smtp_implicit_tls: bool = False
    smtp_ca_file: str | None = None
    ui_url: str = DEFAULT_UI_URL  # where the links in messages point (the Dagster UI)

    def notifier(self) -> Notifier:
        return Notifier(
            slack_webhook_url=_read_secret(self.slack_webhook_url_file, "Slack webhook URL") or self.slack_webhook_url,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_from=self.smtp_from,
            smtp_to=tuple(self.smtp_to),
            smtp_user=self.smtp_user,
            smtp_password=_read_secret(self.smtp_password_file, "SMTP password") or self.smtp_password,
            smtp_starttls=self.smtp_starttls,
            smtp_implicit_tls=self.smtp_implicit_tls,
            smtp_ca_file=self.smtp_ca_file,
        )

    def send(self, subject: str, text: str) -> list[str]:
        return self.notifier().send(subject, text, logger=dg.get_dagster_logger())


def notifier_from_env(environ: Mapping[str, str] = os.environ) -> NotifierResource:
    """The notifier the SHOP_OPS_* variables describe (module docstring); secrets stay `dg.EnvVar`s or file paths."""

    def secret(name: str) -> str | None:
        return dg.EnvVar(name) if environ.get(name) else None  # type: ignore[return-value]

    port = int(environ.get("SHOP_OPS_SMTP_PORT") or 25)
    legacy_starttls = (environ.get("SHOP_OPS_SMTP_STARTTLS") or "0").lower() in ("1", "true", "yes")
    tls = (environ.get("SHOP_OPS_SMTP_TLS") or "").lower() or (
        "starttls" if legacy_starttls else "implicit" if port == 465 else "none"
    )
    if tls not in ("starttls", "implicit", "none"):
        raise NotifyError(f"SHOP_OPS_SMTP_TLS={tls!r}: use starttls, implicit or none")
    if tls == "none" and (environ.get("SHOP_OPS_SMTP_USER") or environ.get("SHOP_OPS_SMTP_PASSWORD")
                          or environ.get("SHOP_OPS_SMTP_PASSWORD_FILE")):  # fmt: skip
        raise NotifyError(NO_TLS_WITH_CREDENTIALS)
    return NotifierResource(
        slack_webhook_url=secret("SHOP_OPS_SLACK_WEBHOOK_URL"),
        slack_webhook_url_file=environ.get("SHOP_OPS_SLACK_WEBHOOK_URL_FILE") or None,
        smtp_host=environ.get("SHOP_OPS_SMTP_HOST") or None,
        smtp_port=port,
        smtp_from=environ.get("SHOP_OPS_SMTP_FROM") or None,
        smtp_to=[a.strip() for a in (environ.get("SHOP_OPS_SMTP_TO") or "").split(",") if a.strip()],
        smtp_user=environ.get("SHOP_OPS_SMTP_USER") or None,
        smtp_password=secret("SHOP_OPS_SMTP_PASSWORD"),
        smtp_password_file=environ.get("SHOP_OPS_SMTP_PASSWORD_FILE") or None,
        smtp_starttls=tls == "starttls",
        smtp_implicit_tls=tls == "implicit",
        smtp_ca_file=environ.get("SHOP_OPS_SMTP_CA_FILE") or None,
        ui_url=(environ.get("SHOP_OPS_UI_URL") or DEFAULT_UI_URL).rstrip("/"),
    )
