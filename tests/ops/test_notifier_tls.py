"""SMTP only over TLS: a real STARTTLS (and implicit TLS) login and delivery, and the refusals that keep a password off the wire.

The servers are aiosmtpd in this process (threads, no program), with a certificate signed by a
CA made here; the notifier trusts that CA through SHOP_OPS_SMTP_CA_FILE.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from shop_ops.resources.notifier import NotifyError, notifier_from_env
from shop_ops.services.processes import free_port
from shop_ops.services.redaction import KNOWN_SECRETS
from tests.certificates import LocalCa

USER, PASSWORD = "alerts", "smtp-pw-Zq81vX0o"


@dataclass
class Mailbox:
    """What the server saw: messages, and each login attempt (user, password, over TLS?)."""

    messages: list[str] = field(default_factory=list)
    logins: list[tuple[str, str, bool]] = field(default_factory=list)

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"

    def authenticate(self, server, session, envelope, mechanism, data) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        over_tls = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        self.logins.append((user, password, over_tls))
        return AuthResult(success=(user, password) == (USER, PASSWORD))


def _certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 it signs: (ca.pem, server.pem, server.key)."""
    ca = LocalCa("shop-ops test SMTP CA")
    cert, key = ca.server_files(folder, ("127.0.0.1",), days=1)
    return ca.write(folder / "ca.pem"), cert, key


@pytest.fixture(scope="module")
def certificates(tmp_path_factory) -> tuple[Path, ssl.SSLContext]:
    ca, cert, key = _certificates(tmp_path_factory.mktemp("smtp-tls"))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return ca, context


@contextmanager
def _server(**smtp_options) -> Iterator[tuple[int, Mailbox]]:
    mailbox, port = Mailbox(), free_port()
    controller = Controller(
        mailbox, hostname="127.0.0.1", port=port, authenticator=mailbox.authenticate, **smtp_options
    )
    controller.start()
    try:
        yield port, mailbox
    finally:
        controller.stop()


def _env(port: int, ca: Path, tls: str) -> dict[str, str]:
    return {
        "SHOP_OPS_SMTP_HOST": "127.0.0.1", "SHOP_OPS_SMTP_PORT": str(port), "SHOP_OPS_SMTP_TO": "ops@example.test",
        "SHOP_OPS_SMTP_USER": USER, "SHOP_OPS_SMTP_PASSWORD": PASSWORD, "SHOP_OPS_SMTP_TLS": tls,
        "SHOP_OPS_SMTP_CA_FILE": str(ca),
    }  # fmt: skip


def _notifier(env: dict[str, str], monkeypatch):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return notifier_from_env(env).process_config_and_initialize().notifier()


def test_starttls_login_and_delivery(certificates, monkeypatch):
    ca, context = certificates
    # The server refuses AUTH before STARTTLS and any mail without it, as a strict relay does.
    with _server(tls_context=context, require_starttls=True, auth_require_tls=True) as (port, mailbox):
        notifier = _notifier(_env(port, ca, "starttls"), monkeypatch)
        assert notifier.send("backup failed", "disk full") == ["email"]
    assert mailbox.logins == [(USER, PASSWORD, True)]  # one login, over TLS
    assert len(mailbox.messages) == 1 and "Subject: backup failed" in mailbox.messages[0]
    KNOWN_SECRETS.discard(PASSWORD)


def test_implicit_tls_login_and_delivery(certificates, monkeypatch):
    ca, context = certificates
    # (aiosmtpd only counts STARTTLS as TLS for auth_require_tls: the login's TLS is checked below)
    with _server(ssl_context=context, auth_require_tls=False) as (port, mailbox):
        notifier = _notifier(_env(port, ca, "implicit"), monkeypatch)
        assert notifier.send("cert renewed", "staging") == ["email"]
    assert mailbox.logins == [(USER, PASSWORD, True)] and len(mailbox.messages) == 1
    KNOWN_SECRETS.discard(PASSWORD)


def test_server_without_starttls_gets_no_login(certificates, monkeypatch):
    ca, _context = certificates
    # This server would take a plain-text login: the notifier must not offer one.
    with _server(auth_require_tls=False) as (port, mailbox):
        notifier = _notifier(_env(port, ca, "starttls"), monkeypatch)
        with pytest.raises(
            NotifyError, match=rf"email: NotifyError: SMTP server 127\.0\.0\.1:{port} does not offer STARTTLS"
        ):
            notifier.send("deploy failed", "details")
    assert mailbox.logins == [] and mailbox.messages == []
    KNOWN_SECRETS.discard(PASSWORD)


def test_untrusted_certificate_is_refused(certificates, tmp_path, monkeypatch):
    _ca, context = certificates
    other_ca, _cert, _key = _certificates(tmp_path)
    with _server(tls_context=context, require_starttls=True) as (port, mailbox):
        notifier = _notifier(_env(port, other_ca, "starttls"), monkeypatch)
        with pytest.raises(NotifyError, match="CERTIFICATE_VERIFY_FAILED"):
            notifier.send("deploy failed", "details")
    assert mailbox.logins == []
    KNOWN_SECRETS.discard(PASSWORD)


@pytest.mark.parametrize("tls", ["none", ""])
def test_credentials_without_tls_are_refused_when_configured(tls):
    env = {"SHOP_OPS_SMTP_HOST": "127.0.0.1", "SHOP_OPS_SMTP_TO": "ops@example.test", "SHOP_OPS_SMTP_USER": USER,
           "SHOP_OPS_SMTP_PASSWORD_FILE": "/run/secrets/smtp", "SHOP_OPS_SMTP_TLS": tls}  # fmt: skip
    with pytest.raises(NotifyError, match="configured without TLS: set SHOP_OPS_SMTP_TLS=starttls"):
        notifier_from_env(env)


def test_placeholder_smtp_password_is_refused(tmp_path):
    secret = tmp_path / "smtp-password"
    secret.write_text("CHANGE_ME\n")
    env = {"SHOP_OPS_SMTP_HOST": "127.0.0.1", "SHOP_OPS_SMTP_TO": "ops@example.test", "SHOP_OPS_SMTP_USER": USER,
           "SHOP_OPS_SMTP_PASSWORD_FILE": str(secret), "SHOP_OPS_SMTP_TLS": "starttls"}  # fmt: skip
    with pytest.raises(
        NotifyError, match=r'^SHOP_OPS_SMTP_PASSWORD is a placeholder \("CHANGE_ME"\): set a real secret'
    ):
        notifier_from_env(env).notifier()
