"""sslyze (its own virtualenv) against a real nginx: Mozilla-intermediate passes, legacy TLS and a foreign root are reported.

One nginx serves three HTTPS listeners with certificates from CAs made here with `cryptography`:
Mozilla's intermediate settings with a certificate from the trusted root; the same plus TLS 1.0/1.1
and a CBC suite (OpenSSL 3 still offers them at `@SECLEVEL=0`); and intermediate settings with a
certificate from a root the scan does not trust.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.security import TLS_CHECK, tls_scan
from shop_ops.resources.router import nginx_binary
from shop_ops.security.checkov import ScanError
from shop_ops.security.scanners import ScannerResource, TlsEndpoint
from shop_ops.security.tls_scan import TlsTarget, run_sslyze
from shop_ops.services.processes import free_port, launch_daemon, port_is_open, stop_own
from tests.certificates import LocalCa
from tests.support import wait_until

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SSLYZE = ROOT / ".venv-sslyze"
NAME = "staging.shop.test"
HSTS = 63072000
# Mozilla's intermediate configuration (ssl-config.mozilla.org, nginx, OpenSSL 3).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
LEGACY_SUITE = "ECDHE-ECDSA-AES128-SHA"  # TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: the one usable in TLS 1.0 with ECDSA


def _server(port: int, cert: Path, key: Path, protocols: str, ciphers: str) -> str:
    return f"""
    server {{
        listen 127.0.0.1:{port} ssl;
        server_name {NAME};
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols {protocols};
        ssl_ecdh_curve X25519:prime256v1:secp384r1;
        ssl_ciphers {ciphers};
        ssl_prefer_server_ciphers off;
        ssl_session_timeout 1d;
        ssl_session_cache shared:tls{port}:1m;
        add_header Strict-Transport-Security "max-age={HSTS}" always;
        location / {{ return 200 "ok\\n"; }}
    }}"""


@dataclass(frozen=True)
class Endpoints:
    roots: Path  # the trusted root, PEM
    intermediate: int  # Mozilla intermediate, certificate from the trusted root
    legacy: int  # plus TLS 1.0/1.1 and a CBC suite
    foreign: int  # intermediate, certificate from another root
    closed: int  # nothing listens


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    assert (SSLYZE / "bin" / "python").exists(), f"{SSLYZE} is missing: `make install` makes .venv-sslyze"
    folder = tmp_path_factory.mktemp("tls-scan")
    trusted, foreign = LocalCa("shop-ops test root"), LocalCa("someone else's root")
    roots = trusted.write(folder / "roots.pem")
    good = trusted.server_files(folder / "good", (NAME,))
    other = foreign.server_files(folder / "other", (NAME,))
    ports = Endpoints(roots, free_port(), free_port(), free_port(), free_port())
    servers = [
        _server(ports.intermediate, *good, "TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS),
        _server(ports.legacy, *good, "TLSv1 TLSv1.1 TLSv1.2 TLSv1.3", f"{INTERMEDIATE_CIPHERS}:{LEGACY_SUITE}:@SECLEVEL=0"),
        _server(ports.foreign, *other, "TLSv1.2 TLSv1.3", INTERMEDIATE_CIPHERS),
    ]  # fmt: skip
    (folder / "tmp").mkdir()
    conf = folder / "nginx.conf"
    conf.write_text(
        f"daemon off;\npid {folder / 'nginx.pid'};\nerror_log {folder / 'error.log'};\n"
        "events { worker_connections 64; }\n"
        f"http {{\n    access_log off;\n    client_body_temp_path {folder / 'tmp'};\n{''.join(servers)}\n}}\n"
    )
    check = subprocess.run([nginx_binary(), "-t", "-p", str(folder), "-c", str(conf)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    pidfile = folder / "launcher.pid"
    process = launch_daemon([nginx_binary(), "-p", str(folder), "-c", str(conf)], folder / "nginx.out", pidfile)
    try:
        wait_until("nginx listening", lambda: port_is_open(ports.foreign) or None, timeout=10, step=0.1)
        yield ports
    finally:
        stop_own(process, pidfile, lambda pid: False, 10, "the test's nginx")


def _scan(endpoints: Endpoints, port: int, name: str = NAME):
    return run_sslyze(SSLYZE, TlsTarget("127.0.0.1", port, name), endpoints.roots)


def test_mozilla_intermediate_passes_with_a_chain_to_the_local_root(endpoints: Endpoints) -> None:
    scan = _scan(endpoints, endpoints.intermediate)
    assert scan.compliant and scan.compliance_issues == {}
    assert scan.accepted_protocols == ("TLSv1.2", "TLSv1.3") and scan.legacy_protocols_refused
    assert scan.weak_ciphers == ()
    assert scan.chain_valid and scan.chain_error is None and scan.hostname_matches
    assert scan.issuer == "CN=shop-ops test root" and scan.sans == (NAME,)
    assert 89.9 <= scan.days_to_expiry <= 90.0
    assert scan.hsts_max_age == HSTS
    assert scan.passed and scan.findings.empty
    assert scan.metadata()["compliant"] is True and scan.metadata()["weak_ciphers"] == 0


def test_tls_1_0_and_a_cbc_suite_are_reported_not_compliant_in_sslyzes_words(endpoints: Endpoints) -> None:
    scan = _scan(endpoints, endpoints.legacy)
    assert not scan.compliant and not scan.passed
    assert scan.accepted_protocols == ("TLSv1.0", "TLSv1.1", "TLSv1.2", "TLSv1.3")
    assert not scan.legacy_protocols_refused
    assert set(scan.weak_ciphers) == {"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA"}
    # sslyze's own complaints, verbatim (it prints a Python set: the order varies)
    versions = scan.compliance_issues["tls_versions"]
    assert versions.startswith("TLS versions {") and versions.endswith("} are supported, but should be rejected.")
    assert "'TLSv1'" in versions and "'TLSv1.1'" in versions
    assert "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA" in scan.compliance_issues["ciphers"]
    assert scan.chain_valid  # the certificate itself is fine
    rows = scan.findings
    assert set(rows[rows["check"] == "protocol"]["protocol"]) == {"TLSv1.0", "TLSv1.1"}
    assert set(rows[rows["check"] == "weak_cipher"]["protocol"]) == {"TLSv1.0", "TLSv1.1", "TLSv1.2"}
    assert set(rows[rows["check"] == "mozilla_intermediate"]["item"]) == {"tls_versions", "ciphers"}


def test_a_certificate_from_another_root_is_a_chain_failure(endpoints: Endpoints) -> None:
    scan = _scan(endpoints, endpoints.foreign)
    assert not scan.chain_valid and not scan.passed
    assert scan.hostname_matches  # the right name, the wrong issuer
    assert scan.findings[scan.findings["check"] == "certificate_chain"]["item"].tolist() == [f"CN={NAME}"]
    assert "certificate_path_validation" in scan.compliance_issues


def test_a_name_the_certificate_does_not_carry_fails_hostname_and_chain(endpoints: Endpoints) -> None:
    scan = _scan(endpoints, endpoints.intermediate, "production.shop.test")
    assert not scan.hostname_matches and not scan.chain_valid
    assert "subjectAltName" in (scan.chain_error or "")
    assert scan.findings[scan.findings["check"] == "hostname"]["item"].tolist() == ["production.shop.test"]


def test_errors_name_the_endpoint_or_the_fix(endpoints: Endpoints, tmp_path: Path) -> None:
    with pytest.raises(ScanError, match=f"could not connect to 127.0.0.1:{endpoints.closed}"):
        _scan(endpoints, endpoints.closed)
    with pytest.raises(ScanError, match=r"make install.*\.venv-sslyze"):
        run_sslyze(tmp_path / "no-venv", TlsTarget("127.0.0.1", endpoints.intermediate, NAME), endpoints.roots)


def test_the_assets_blocking_check_follows_the_scan(endpoints: Endpoints) -> None:
    scanners = ScannerResource(
        repository=str(ROOT), sslyze_venv=str(SSLYZE), hadolint="hadolint", pip_audit="pip-audit",
        tls_endpoints={
            "staging": TlsEndpoint(port=endpoints.intermediate, server_name=NAME),
            "production": TlsEndpoint(port=endpoints.legacy, server_name=NAME),
        },
        trust_bundle=str(endpoints.roots),
    )  # fmt: skip
    result = dg.materialize(
        [tls_scan("staging"), tls_scan("production")], resources={"scanners": scanners}, raise_on_error=False
    )
    checks = {c.asset_key.path[0]: c for c in result.get_asset_check_evaluations()}
    assert {c.check_name for c in checks.values()} == {TLS_CHECK}
    assert checks["staging"].passed and not checks["production"].passed
    staging = result.asset_materializations_for_node("staging__tls_scan")[0].metadata
    assert staging["compliant"].value is True and staging["chain_valid"].value is True
    assert staging["protocols"].value == "TLSv1.2, TLSv1.3" and staging["weak_ciphers"].value == 0
    assert result.output_for_node("staging__tls_scan").empty
