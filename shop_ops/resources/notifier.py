"""Notifications to people: a Slack incoming webhook and/or e-mail over SMTP, configured from env and secret files.

`Notifier` is the plain sender; `NotifierResource` its Dagster resource. The webhook URL and
the SMTP password are secrets: only from environment variables or files, never config values.
With nothing configured, `send` is a no-op that says so in the log.

Environment: SHOP_OPS_SLACK_WEBHOOK_URL or SHOP_OPS_SLACK_WEBHOOK_URL_FILE; SHOP_OPS_SMTP_HOST,
SHOP_OPS_SMTP_PORT (25), SHOP_OPS_SMTP_FROM, SHOP_OPS_SMTP_TO (comma-separated),
SHOP_OPS_SMTP_USER, SHOP_OPS_SMTP_PASSWORD or SHOP_OPS_SMTP_PASSWORD_FILE, SHOP_OPS_SMTP_STARTTLS (0/1).
"""

from __future__ import annotations

import logging
import os
import smtplib
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import dagster as dg
import httpx

_log = logging.getLogger(__name__)


class NotifyError(RuntimeError):
    """A configured channel failed (the message names the channel, never the secret)."""


def _secret(environ: Mapping[str, str], name: str, file_override: str | None = None) -> str | None:
    path = file_override or environ.get(f"{name}_FILE")
    if path:
        try:
            return Path(path).read_text().strip() or None
        except OSError as exc:
            raise NotifyError(f"{name}_FILE={path}: {exc.strerror}") from None
    return environ.get(name) or None


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
    timeout: float = 10

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        slack_webhook_url_file: str | None = None,
        smtp_password_file: str | None = None,
        **overrides: object,
    ) -> Notifier:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {
            "slack_webhook_url": _secret(env, "SHOP_OPS_SLACK_WEBHOOK_URL", slack_webhook_url_file),
            "smtp_host": env.get("SHOP_OPS_SMTP_HOST") or None,
            "smtp_port": int(env.get("SHOP_OPS_SMTP_PORT") or 25),
            "smtp_from": env.get("SHOP_OPS_SMTP_FROM") or None,
            "smtp_to": tuple(a.strip() for a in (env.get("SHOP_OPS_SMTP_TO") or "").split(",") if a.strip()),
            "smtp_user": env.get("SHOP_OPS_SMTP_USER") or None,
            "smtp_password": _secret(env, "SHOP_OPS_SMTP_PASSWORD", smtp_password_file),
            "smtp_starttls": (env.get("SHOP_OPS_SMTP_STARTTLS") or "0").lower() in ("1", "true", "yes"),
        }
        values.update({k: v for k, v in overrides.items() if v not in (None, "", ())})
        return cls(**values)  # type: ignore[arg-type]

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
                errors.append(
                    f"{channel}: {type(exc).__name__}: {str(exc).replace(self.slack_webhook_url or '', '<webhook>')}"
                )
        log.info("notifier: sent %r to %s", subject, ", ".join(sent) or "nothing")
        if errors:
            raise NotifyError("; ".join(errors))
        return sent

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
        with smtplib.SMTP(self.smtp_host or "", self.smtp_port, timeout=self.timeout) as smtp:
            if self.smtp_starttls:
                smtp.starttls()
            if self.smtp_user and self.smtp_password:
                smtp.login(self.smtp_user, self.smtp_password)
            smtp.send_message(message)


class NotifierResource(dg.ConfigurableResource):
    """Slack and e-mail; non-secret settings here or in env, secrets only from env or files."""

    slack_webhook_url_file: str | None = None
    smtp_host: str | None = None
    smtp_port: int | None = None
    smtp_from: str | None = None
    smtp_to: list[str] | None = None
    smtp_user: str | None = None
    smtp_password_file: str | None = None
    smtp_starttls: bool | None = None

    def notifier(self) -> Notifier:
        return Notifier.from_env(
            slack_webhook_url_file=self.slack_webhook_url_file,
            smtp_password_file=self.smtp_password_file,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_from=self.smtp_from,
            smtp_to=tuple(self.smtp_to or ()),
            smtp_user=self.smtp_user,
            smtp_starttls=self.smtp_starttls,
        )

    def send(self, subject: str, text: str) -> list[str]:
        return self.notifier().send(subject, text, logger=dg.get_dagster_logger())
