"""aws profile: the certificates assets read the ALB's ACM certificates (a real moto server), expiry checked, none issued."""

from __future__ import annotations

import dagster as dg
from cryptography.hazmat.primitives import serialization

from shop_ops.assets.security import EXPIRY_CHECK, certificate_assets
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.security.acm import AcmCertificates
from tests.certificates import LocalCa, private_pem

DOMAINS = {"staging": "staging.shop.example.com", "production": "shop.example.com"}


def _import(acm, domain: str, days: int) -> str:
    """A certificate for `domain` (and www.) valid `days` more days, imported into ACM with its chain; its ARN."""
    ca = LocalCa("shop-ops test CA")
    certificate, key = ca.server((domain, f"www.{domain}"), days=days)
    return acm.import_certificate(
        Certificate=certificate.public_bytes(serialization.Encoding.PEM),
        PrivateKey=private_pem(key),
        CertificateChain=ca.pem(),
    )["CertificateArn"]


def test_acm_expiry_read_and_checked(aws: AwsResource) -> None:
    acm = aws.client("acm")
    for arn in [c["CertificateArn"] for c in acm.list_certificates()["CertificateSummaryList"]]:
        acm.delete_certificate(CertificateArn=arn)  # the moto server lives for the session
    _import(acm, DOMAINS["production"], 40)
    newest = _import(acm, DOMAINS["production"], 200)  # the one ACM renewed: the latest expiry counts
    expiring = _import(acm, DOMAINS["staging"], 10)  # renewal stopped (e.g. its validation record is gone)

    result = dg.materialize(
        certificate_assets(list(DOMAINS)),
        resources={
            "certificate_authority": AcmCertificates(aws=aws, domains=DOMAINS, expiry_check_days=21),
            "notifier": NotifierResource(),
        },
        raise_on_error=False,
    )
    metadata = {
        event.asset_key.path[0]: event.materialization.metadata for event in result.get_asset_materialization_events()
    }
    assert metadata["production"]["source"].value == newest
    assert 199 < metadata["production"]["days_to_expiry"].value < 200.01
    assert metadata["production"]["sans"].value == "shop.example.com, www.shop.example.com"
    assert metadata["production"]["renewed"].value is False  # ACM renews; nothing is issued from here
    assert metadata["staging"]["source"].value == expiring
    checks = {check.asset_key.path[0]: check for check in result.get_asset_check_evaluations()}
    assert {check.check_name for check in checks.values()} == {EXPIRY_CHECK}
    assert checks["production"].passed and not checks["staging"].passed
    assert not result.success  # a failed blocking check fails the run


def test_missing_acm_certificate_fails_naming_the_domain(aws: AwsResource) -> None:
    source = AcmCertificates(aws=aws, domains={"staging": "nowhere.shop.example.com"})
    result = dg.materialize(
        certificate_assets(["staging"]),
        resources={"certificate_authority": source, "notifier": NotifierResource()},
        raise_on_error=False,
    )
    assert not result.success
    (failure,) = [event for event in result.all_events if event.event_type_value == "STEP_FAILURE"]
    assert "no ISSUED ACM certificate covers nowhere.shop.example.com" in failure.step_failure_data.error.message
