"""aws profile: the environments' certificates are the ALB's ACM certificates (Terraform); their expiry read from ACM.

ACM issues and renews them itself (DNS-validated, from 60 days before expiry), so nothing is
issued here: `AcmCertificates.ensure` finds the ISSUED certificate for the environment's domain
(the host of its URL) and reports its expiry, issuer, names and ACM's renewal status. The assets'
blocking check then catches a renewal that stopped (e.g. its validation record was removed).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from shop_ops.resources.aws import AwsResource
from shop_ops.security.acme import CertificateError
from shop_ops.security.certificates import CertificateOutcome, CertificateSource, CertificateStatus


def acm_status(certificate: dict[str, Any], now: dt.datetime | None = None) -> CertificateStatus:
    """A CertificateStatus from ACM's describe_certificate answer (its "Certificate" object)."""
    not_after = certificate["NotAfter"].astimezone(dt.UTC)
    now = now or dt.datetime.now(dt.UTC)
    return CertificateStatus(
        source=certificate["CertificateArn"],
        not_before=certificate["NotBefore"].astimezone(dt.UTC),
        not_after=not_after,
        days_left=(not_after - now).total_seconds() / 86400,
        issuer=str(certificate.get("Issuer", "")),
        sans=tuple(certificate.get("SubjectAlternativeNames") or [certificate["DomainName"]]),
        serial=str(certificate.get("Serial", "")),
    )


def find_certificate(acm: Any, domain: str) -> dict[str, Any]:
    """The ISSUED ACM certificate that covers `domain` and expires last; CertificateError if there is none."""
    found: list[dict[str, Any]] = []
    for page in acm.get_paginator("list_certificates").paginate(CertificateStatuses=["ISSUED"]):
        for summary in page["CertificateSummaryList"]:
            certificate = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
            if domain in (certificate.get("SubjectAlternativeNames") or [certificate["DomainName"]]):
                found.append(certificate)
    if not found:
        raise CertificateError(
            f"no ISSUED ACM certificate covers {domain}: `terraform apply` in infra/terraform (modules/alb) requests "
            "it, and ACM issues it once its DNS validation record resolves"
        )
    return max(found, key=lambda certificate: certificate["NotAfter"])


class AcmCertificates(CertificateSource):
    """aws profile: the ACM certificate of each environment's domain (its public URL's host)."""

    aws: AwsResource
    domains: dict[str, str]  # environment -> domain (the host of its URL)

    def ensure(self, environment: str, log: Callable[[str], None]) -> CertificateOutcome:
        if environment not in self.domains:
            known = ", ".join(sorted(self.domains)) or "none"
            raise CertificateError(f"no domain for environment {environment!r} (known: {known})")
        domain = self.domains[environment]
        try:
            certificate = find_certificate(self.aws.client("acm"), domain)
        except (BotoCoreError, ClientError) as exc:
            raise CertificateError(f"ACM in {self.aws.region} could not be read for {domain}: {exc}") from None
        status = acm_status(certificate)
        renewal = (certificate.get("RenewalSummary") or {}).get("RenewalStatus", "none pending")
        reason = f"managed by ACM ({certificate.get('Type', '?')}, renewal eligibility "
        reason += f"{certificate.get('RenewalEligibility', '?')}, renewal {renewal})"
        log(f"{domain}: {status.days_left:.1f} days left, {reason}")
        return CertificateOutcome(environment, domain, status, False, reason, False)
