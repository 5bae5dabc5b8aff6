"""sslyze (its own virtualenv) against a real nginx: Mozilla-intermediate passes, legacy TLS and a foreign root are reported.

One nginx serves three HTTPS listeners with certificates from CAs made here with `cryptography`:
Mozilla's intermediate settings with a certificate from the trusted root; the same plus TLS 1.0/1.1
and a CBC suite (OpenSSL 3 still offers them at `@SECLEVEL=0`); and intermediate settings with a
certificate from a root the scan does not trust.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from shop_ops.assets.security import TLS_CHECK, tls_scan
from shop_ops.security.checkov import ScanError
from shop_ops.security.scanners import ScannerResource, TlsEndpoint
from shop_ops.security.tls_scan import TlsTarget, run_sslyze
from tests.certificates import HSTS, NAME, Endpoints, tls_endpoints

pytestmark = pytest.mark.services

ROOT = Path(__file__).resolve().parents[2]
SSLYZE = ROOT / ".venv-sslyze"


@pytest.fixture(scope="module")
def endpoints(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    assert (SSLYZE / "bin" / "python").exists(), f"{SSLYZE} is missing: `make install` makes .venv-sslyze"
    with tls_endpoints(tmp_path_factory.mktemp("tls-scan")) as found:
        yield found


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
