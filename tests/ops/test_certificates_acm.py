"""aws profile: the certificates assets read the ALB's ACM certificates (a real moto server), expiry checked, none issued."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shop_ops.assets.security import EXPIRY_CHECK, certificate_assets
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.notifier import NotifierResource
from shop_ops.security.acm import AcmCertificates

DOMAINS = {"staging": "staging.shop.example.com", "production": "shop.example.com"}


def _import(acm, domain: str, days: int) -> str:
    """A certificate for `domain` valid `days` more days, imported into ACM; its ARN."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain), x509.DNSName(f"www.{domain}")]), False)
        .sign(key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    return acm.import_certificate(
        Certificate=certificate.public_bytes(pem),
        PrivateKey=key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
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
