"""HTTPS at the routers with certificates from a real ACME flow: Pebble and its DNS, the acme client, nginx, k6.

One Pebble and two routers (staging, production) sharing one challenge port serve the module;
a tiny HTTP server stands in for the slots. Issue and serve (chain and name verified against the
trust bundle), the HTTP redirect, HSTS; a fresh certificate kept; the CA down or a challenge not
served named in the error; a short-lived certificate renewed by the asset under k6 load with no
failed request, after a Pebble restart (a new root, the account registered again, the old root
kept while a live certificate needs it).
"""

from __future__ import annotations

import json
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from shop_ops.assets.security import EXPIRY_CHECK, certificates
from shop_ops.resources.k6 import K6Summary, run_k6
from shop_ops.resources.notifier import NotifierResource
from shop_ops.resources.router import (
    EnvironmentRouter,
    PublicListeners,
    Router,
    RouterResource,
    SlotPortsConfig,
    Upstreams,
    certificate_files,
)
from shop_ops.security.acme import CertificateError
from shop_ops.security.certificates import (
    TRUST_BUNDLE,
    CertificateAuthorityResource,
    needs_renewal,
    read_certificate,
    refresh_trust_bundle,
)
from shop_ops.security.tls_scan import TlsTarget, run_sslyze
from shop_ops.services.pebble import Pebble
from shop_ops.services.processes import free_port

pytestmark = pytest.mark.services  # Pebble, pebble-challtestsrv, nginx, k6

ROOT = Path(__file__).resolve().parents[2]
ENVIRONMENTS = ("staging", "production")
HSTS_SECONDS = 31536000
DAY = 86400


class _Slot(BaseHTTPRequestHandler):
    """Every slot of every router: 200 "ok" to anything."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


class _Hook(BaseHTTPRequestHandler):
    """A Slack-style webhook receiver: keeps what it is sent."""

    received: list[dict] = []  # noqa: RUF012

    def do_POST(self) -> None:
        type(self).received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@dataclass
class Site:
    base: Path
    tls: Path
    pebble: Pebble
    routers: dict[str, Router]
    slot_port: int

    @property
    def bundle(self) -> Path:
        return self.tls / TRUST_BUNDLE

    def authority(self, **overrides: object) -> CertificateAuthorityResource:
        fields = {
            "directory_url": self.pebble.directory_url,
            "api_ca_file": str(self.pebble.api_ca_file),
            "root_url": f"{self.pebble.management_url}/roots/0",
            "tls_folder": str(self.tls),
            "challenge_port": self.pebble.challenge_port,
            "router": self.router_resource(),
        }
        return CertificateAuthorityResource(**{**fields, **overrides})

    def router_resource(self) -> RouterResource:
        slots = SlotPortsConfig(backend_port=self.slot_port, frontend_port=self.slot_port)
        public = {name: router.public for name, router in self.routers.items()}
        return RouterResource(
            environments={
                name: EnvironmentRouter(
                    folder=str(router.folder),
                    port=router.port,
                    blue=slots,
                    green=slots,
                    https_port=public[name].https_port,
                    http_port=public[name].http_port,
                    server_name=public[name].server_name,
                )
                for name, router in self.routers.items()
            },
            tls_folder=str(self.tls),
            challenge_port=self.pebble.challenge_port,
            challenge_root=str(public["staging"].challenge_root),
            hsts_max_age_seconds=HSTS_SECONDS,
        )


def _serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    return server


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-tls-"))
    base.chmod(0o755)  # nginx's workers (nobody, under root) read the challenge webroot inside it
    slot = _serve(_Slot)
    challenge_port = free_port()
    pebble = Pebble(base / "pebble", free_port(), free_port(), free_port(), challenge_port)
    tls = base / "tls"
    routers: dict[str, Router] = {}
    try:
        pebble.start()
        for name in ENVIRONMENTS:
            certificate, key = certificate_files(tls, name)
            public = PublicListeners(
                f"{name}.shop.test", free_port(), free_port(), challenge_port, base / "challenges", certificate, key,
                HSTS_SECONDS,
            )  # fmt: skip
            routers[name] = Router(name, base / "routers" / name, free_port(), public=public)
            routers[name].start(Upstreams("blue", slot.server_port, slot.server_port))
        yield Site(base, tls, pebble, routers, slot.server_port)
    finally:
        for router in routers.values():
            router.stop()
        pebble.stop()
        slot.shutdown()
        slot.server_close()
        shutil.rmtree(base, ignore_errors=True)


def _https_get(router: Router, bundle: Path, name: str | None = None, path: str = "/") -> httpx.Response:
    """GET over HTTPS from 127.0.0.1:https_port, verifying the chain against `bundle` and the name `name`."""
    assert router.public is not None
    name = name or router.public.server_name
    with httpx.Client(verify=ssl.create_default_context(cafile=str(bundle)), timeout=5) as client:
        return client.request(
            "GET",
            f"https://127.0.0.1:{router.public.https_port}{path}",
            headers={"Host": f"{name}:{router.public.https_port}"},
            extensions={"sni_hostname": name},
        )


def _resumed(router: Router, bundle: Path, version: ssl.TLSVersion) -> bool:
    """A second connection resumes the first one's TLS session (`version` at most)."""
    assert router.public is not None
    context = ssl.create_default_context(cafile=str(bundle))
    context.maximum_version = version
    name, address = router.public.server_name, ("127.0.0.1", router.public.https_port)
    request = f"GET /router-health HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n".encode()
    with context.wrap_socket(socket.create_connection(address, timeout=5), server_hostname=name) as first:
        first.sendall(request)
        first.recv(1024)  # TLS 1.3 hands the session over after the handshake
        session = first.session
    with context.wrap_socket(
        socket.create_connection(address, timeout=5), server_hostname=name, session=session
    ) as second:
        return second.session_reused


def staging_public(site: Site) -> PublicListeners:
    public = site.routers["staging"].public
    assert public is not None
    return public


def _roots(bundle: Path) -> set[str]:
    return {root.subject.rfc4514_string() for root in x509.load_pem_x509_certificates(bundle.read_bytes())}


def test_issue_serve_redirect_and_hsts(site: Site) -> None:
    authority = site.authority()
    outcomes = {name: authority.ensure(name, lambda _: None) for name in site.routers}
    for name, outcome in outcomes.items():
        assert outcome.renewed and outcome.status.sans == (f"{name}.shop.test",)
        assert 89.9 < outcome.status.days_left <= 90  # Pebble set to 90 days (its default is 5 years)
        assert outcome.status.issuer.startswith("Pebble Intermediate CA")
        assert outcome.status.key_matches
        key = site.routers[name].public.certificate_key  # type: ignore[union-attr]
        assert oct(key.stat().st_mode & 0o777) == "0o600"
    # Both routers answer challenges on the one shared port (nginx reuseport: two listening sockets), either
    # one serving the shared webroot, so both were issued.
    port = site.pebble.challenge_port
    listening = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], capture_output=True, text=True).stdout
    assert len(listening.splitlines()) == 2, listening
    token = staging_public(site).challenge_root / ".well-known" / "acme-challenge" / "planted"
    token.write_text("planted")
    token.chmod(0o644)
    for _ in range(6):
        with httpx.Client() as fresh:  # a new connection each time: the kernel picks a master per connection
            assert fresh.get(f"http://127.0.0.1:{port}/.well-known/acme-challenge/planted").text == "planted"
    token.unlink()
    assert _roots(site.bundle) == {
        x509.load_pem_x509_certificate(site.pebble.current_root().encode()).subject.rfc4514_string()
    }

    staging = site.routers["staging"]
    assert staging.public is not None
    answer = _https_get(staging, site.bundle, path="/healthz")
    assert answer.status_code == 200 and answer.text == "ok"
    assert answer.headers["strict-transport-security"] == f"max-age={HSTS_SECONDS}"
    assert "strict-transport-security" not in httpx.get(f"{staging.url}/healthz").headers  # internal: plain, no HSTS
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _https_get(staging, site.bundle, name="production.shop.test")  # the name is checked, not only the chain
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        _https_get(staging, site.pebble.api_ca_file)  # and the chain: another CA's file does not vouch for it

    # Session resumption (nginx's shared session cache; tickets off) under TLS 1.2 and 1.3.
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        assert _resumed(staging, site.bundle, version), version

    redirect = httpx.get(f"http://127.0.0.1:{staging.public.http_port}/api/products?page=2")
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"https://staging.shop.test:{staging.public.https_port}/api/products?page=2"
    # The challenge path is answered on the HTTP port too, not redirected.
    assert httpx.get(f"http://127.0.0.1:{staging.public.http_port}/.well-known/acme-challenge/none").status_code == 404


def test_sslyze_finds_the_router_compliant(site: Site) -> None:
    """Mozilla intermediate, TLS 1.2/1.3 only, no weak suite, the chain valid to the local root (sslyze 6)."""
    venv = ROOT / ".venv-sslyze"
    if not (venv / "bin" / "python").exists():
        pytest.skip("sslyze's virtualenv .venv-sslyze is missing: `make install` makes it")
    staging = site.routers["staging"]
    assert staging.public is not None
    site.authority().ensure("staging", lambda _: None)
    scan = run_sslyze(venv, TlsTarget("127.0.0.1", staging.public.https_port, "staging.shop.test"), site.bundle)
    assert scan.findings.empty, scan.findings.to_string()
    assert scan.compliant and scan.chain_valid and scan.hostname_matches
    assert scan.accepted_protocols == ("TLSv1.2", "TLSv1.3")
    assert scan.hsts_max_age == HSTS_SECONDS


def test_fresh_certificate_is_kept(site: Site) -> None:
    router = site.routers["staging"]
    assert router.public is not None
    before = read_certificate(router.public.certificate)
    outcome = site.authority().ensure("staging", lambda _: None)
    assert not outcome.renewed and outcome.status.serial == before.serial
    assert not needs_renewal(outcome.status, 30)


def test_errors_name_the_cause(site: Site) -> None:
    down = free_port()
    due = site.authority(directory_url=f"https://127.0.0.1:{down}/dir", renew_before_days=120)  # any certificate is due
    with pytest.raises(CertificateError, match=rf"https://127\.0\.0\.1:{down}/dir does not answer.*shop-ops local up"):
        due.ensure("production", lambda _: None)
    # Tokens put where no router serves them: Pebble's own account of what it got, with the URL it tried.
    client = site.authority().client()
    elsewhere = site.base / "not-served"
    with pytest.raises(CertificateError) as failure:
        client.issue("staging.shop.test", elsewhere, site.base / "x" / "fullchain.pem", site.base / "x" / "key.pem")
    message = str(failure.value)
    assert f"http://staging.shop.test:{site.pebble.challenge_port}/.well-known/acme-challenge/" in message
    assert "404" in message
    assert not list((elsewhere / ".well-known" / "acme-challenge").iterdir())  # its token removed
    assert not (site.base / "x" / "fullchain.pem").exists()


def test_failed_renewal_alerts_and_fails_the_asset(site: Site) -> None:
    hook = type("Hook", (_Hook,), {"received": []})
    receiver = _serve(hook)
    try:
        down = free_port()
        result = dg.materialize(
            [certificates("production")],
            resources={
                "certificate_authority": site.authority(
                    directory_url=f"https://127.0.0.1:{down}/dir", renew_before_days=120, expiry_check_days=100
                ),
                "notifier": NotifierResource(slack_webhook_url=f"http://127.0.0.1:{receiver.server_port}/hook"),
            },
            raise_on_error=False,
        )
    finally:
        receiver.shutdown()
        receiver.server_close()
    assert not result.success
    assert len(hook.received) == 1
    text = hook.received[0]["text"]
    assert "certificate of production" in text and f"127.0.0.1:{down}/dir does not answer" in text


def _k6_https(router: Router, bundle: Path, seconds: int) -> K6Summary:
    """k6 at 200 req/s over HTTPS to the router, trusting `bundle` (Go reads SSL_CERT_FILE); the name mapped to
    127.0.0.1 by k6's `hosts` option in a config file (K6_CONFIG; k6 1.1 ignores K6_HOSTS)."""
    assert router.public is not None
    name = router.public.server_name
    config = router.folder / "k6-hosts.json"
    config.write_text(json.dumps({"hosts": {name: "127.0.0.1"}}))
    env = {
        "BASE_URL": f"https://{name}:{router.public.https_port}",
        "K6_CONFIG": str(config),
        "SSL_CERT_FILE": str(bundle),
        "RATE": "200",
        "DURATION": f"{seconds}s",
        "VUS": "20",
        "MAX_VUS": "60",
        "P95_MS": "1000",
    }
    return run_k6(ROOT / "loadtests" / "bare.js", env, timeout_s=60)


def test_short_lived_certificate_renewed_under_load(site: Site) -> None:
    staging, production = site.routers["staging"], site.routers["production"]
    assert staging.public is not None
    site.authority().ensure("production", lambda _: None)  # issued by the first Pebble (kept if there)
    # A CA that issues for one hour: the certificate it gives needs renewal, and fails the expiry check.
    site.pebble.stop()
    site.pebble.validity_seconds = 3600
    site.pebble.start()
    short_root = site.pebble.current_root()
    issued = (
        site.authority()
        .client()
        .issue(
            "staging.shop.test",
            staging.public.challenge_root,
            staging.public.certificate,
            staging.public.certificate_key,
        )
    )
    assert issued.account_registered  # Pebble forgot the account when it restarted
    refresh_trust_bundle(site.tls, [issued.root])
    staging.install_certificate()
    short = read_certificate(staging.public.certificate, staging.public.certificate_key)
    assert short.days_left < 1 / 24 + 1e-3 and needs_renewal(short, 30)

    # Pebble restarts again (90 days, a third root); `shop-ops local up` puts its root in the bundle at once.
    site.pebble.stop()
    site.pebble.validity_seconds = 90 * DAY
    site.pebble.start()
    current_root = site.pebble.current_root()
    refresh_trust_bundle(site.tls, [current_root])
    old_roots = _roots(site.bundle)
    assert len(old_roots) == 3  # production's root, the short-lived certificate's, Pebble's current one

    load: dict[str, K6Summary] = {}
    k6 = threading.Thread(target=lambda: load.update(summary=_k6_https(staging, site.bundle, 7)))
    k6.start()
    time.sleep(2)  # k6 runs at full rate before the renewal starts
    result = dg.materialize(
        [certificates("staging")],
        resources={
            "certificate_authority": site.authority(),
            "notifier": NotifierResource(),
        },
    )
    assert k6.is_alive()  # the renewal and reload happened under load
    k6.join()
    summary = load["summary"]

    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["renewed"].value is True
    assert 89.9 < metadata["days_to_expiry"].value <= 90
    assert metadata["sans"].value == "staging.shop.test"
    assert metadata["serial"].value != short.serial
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == EXPIRY_CHECK and check.passed

    # Zero failed requests over HTTPS while the router reloaded onto the new certificate.
    assert summary.requests >= 1000, summary.stderr_tail
    assert summary.error_rate == 0 and summary.passed, summary.stderr_tail
    renewed = read_certificate(staging.public.certificate)
    assert _https_get(staging, site.bundle).status_code == 200
    assert staging.served_certificate() == x509.load_pem_x509_certificate(
        staging.public.certificate.read_bytes()
    ).public_bytes(Encoding.DER)
    assert renewed.serial == metadata["serial"].value

    # The bundle keeps production's root (its certificate is live) and the current one; the short-lived
    # certificate's root signs nothing live any more and is dropped.
    roots = _roots(site.bundle)
    short_subject = x509.load_pem_x509_certificate(short_root.encode()).subject.rfc4514_string()
    assert short_subject not in roots and len(roots) == 2
    assert _https_get(production, site.bundle).status_code == 200
