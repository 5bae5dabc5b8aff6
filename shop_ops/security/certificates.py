"""The routers' certificates: their status, when to renew, the trust bundle, and the issue-renew-install flow.

`ensure_certificate` is what the `<env>/certificates` asset runs: a certificate that is missing,
unreadable, for another name, not matching its key, or with fewer than `renew_before_days` left
is issued anew (shop_ops/security/acme.py), the trust bundle is refreshed, and the router reloads
gracefully onto it; a fresh one is kept (and installed if the router does not present it yet).

The trust bundle `<tls folder>/roots.pem` is what clients trust (curl --cacert, k6 through
SSL_CERT_FILE, httpx): Pebble makes a new root at every start, so it holds the CA's current root
and every root that signed a certificate still live in the TLS folder. A root is dropped once no
live certificate needs it. `CertificateAuthorityResource` configures all this by fields.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID

from shop_ops.resources.router import Router, RouterResource, leaf_der
from shop_ops.security.acme import AcmeClient, CertificateError
from shop_ops.services.files import fsync_dir, write_public

__all__ = [
    "CertificateAuthorityResource",
    "CertificateError",
    "CertificateOutcome",
    "CertificateSource",
    "CertificateStatus",
    "ensure_certificate",
    "needs_renewal",
    "read_certificate",
    "refresh_trust_bundle",
    "renewal_reason",
]

TRUST_BUNDLE = "roots.pem"
ACCOUNT_KEY = "acme-account-key.pem"


@dataclass(frozen=True)
class CertificateStatus:
    """What a certificate says: its leaf's expiry, issuer, names and serial; whether `key` belongs to it."""

    source: str  # the chain file, or the ACM certificate's ARN
    not_before: dt.datetime
    not_after: dt.datetime
    days_left: float  # from the moment it was read; negative once expired
    issuer: str
    sans: tuple[str, ...]
    serial: str  # hex, as openssl prints it
    key_matches: bool | None = None  # None: no key file given

    def metadata(self) -> dict[str, Any]:
        return {
            "days_to_expiry": round(self.days_left, 3),
            "not_after": self.not_after.isoformat(),
            "issuer": self.issuer,
            "sans": ", ".join(self.sans),
            "serial": self.serial,
        }


def read_certificate(path: Path, key: Path | None = None, now: dt.datetime | None = None) -> CertificateStatus:
    """The status of the first certificate in `path` (a PEM chain); CertificateError if it cannot be read."""
    try:
        leaf = x509.load_pem_x509_certificates(path.read_bytes())[0]
    except (OSError, ValueError, IndexError) as exc:
        raise CertificateError(f"{path} holds no readable PEM certificate ({exc})") from None
    now = now or dt.datetime.now(dt.UTC)
    try:
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        sans = tuple(names.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        sans = ()
    issuer = leaf.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    key_matches = None
    if key is not None:
        try:
            private = serialization.load_pem_private_key(key.read_bytes(), password=None)
            key_matches = _public_der(private.public_key()) == _public_der(leaf.public_key())
        except (OSError, ValueError, TypeError):
            key_matches = False
    return CertificateStatus(
        source=str(path),
        not_before=leaf.not_valid_before_utc,
        not_after=leaf.not_valid_after_utc,
        days_left=(leaf.not_valid_after_utc - now).total_seconds() / 86400,
        issuer=str(issuer[0].value) if issuer else leaf.issuer.rfc4514_string(),
        sans=sans,
        serial=f"{leaf.serial_number:x}",
        key_matches=key_matches,
    )


def renewal_reason(status: CertificateStatus | None, renew_before_days: float, hostname: str) -> str | None:
    """Why a certificate must be issued now (None: keep it)."""
    if status is None:
        return "no certificate yet"
    if hostname not in status.sans:
        return f"it is for {', '.join(status.sans) or 'no name'}, not {hostname}"
    if not needs_renewal(status, renew_before_days):
        return None
    if status.key_matches is False:
        return "its key file does not match it"
    return f"{status.days_left:.2f} days left, fewer than {renew_before_days:g}"


def needs_renewal(status: CertificateStatus, renew_before_days: float) -> bool:
    """Fewer than `renew_before_days` left (or the key does not match): renew."""
    return status.key_matches is False or status.days_left < renew_before_days


def refresh_trust_bundle(
    tls_folder: Path, roots_in_use: Iterable[str] = (), now: dt.datetime | None = None
) -> list[str]:
    """Rewrite `<tls_folder>/roots.pem`: `roots_in_use` (the CA's current root; a root still served during a
    reload) plus the root of every live certificate under `tls_folder` (its `<env>/root.pem`, kept beside it
    at issue). Returns the subjects of the roots written."""
    now = now or dt.datetime.now(dt.UTC)
    roots: dict[bytes, x509.Certificate] = {}
    for pem in roots_in_use:
        for root in x509.load_pem_x509_certificates(pem.encode()):
            roots[_fingerprint(root)] = root
    for root_file in sorted(tls_folder.glob("*/root.pem")):
        chain_file = root_file.with_name("fullchain.pem")
        try:
            chain = x509.load_pem_x509_certificates(chain_file.read_bytes())
            root = x509.load_pem_x509_certificate(root_file.read_bytes())
            chain[-1].verify_directly_issued_by(root)
        except (OSError, ValueError, TypeError, InvalidSignature):
            continue  # no chain, or not this root's: the root signs nothing live here
        if chain[0].not_valid_after_utc > now:
            roots[_fingerprint(root)] = root
    tls_folder.mkdir(parents=True, exist_ok=True)
    text = "".join(
        f"# {root.subject.rfc4514_string()}\n{root.public_bytes(serialization.Encoding.PEM).decode()}"
        for root in roots.values()
    )
    write_public(tls_folder / TRUST_BUNDLE, text)
    fsync_dir(tls_folder)
    return [root.subject.rfc4514_string() for root in roots.values()]


@dataclass(frozen=True)
class CertificateOutcome:
    """What `ensure_certificate` did for one environment."""

    environment: str
    hostname: str
    status: CertificateStatus
    renewed: bool
    reason: str  # why it was issued, or why it was kept
    account_registered: bool  # the ACME account was (re-)created at the CA for this issue
    trust_bundle: str = ""  # the roots clients trust for it ("": the public web PKI's)

    def metadata(self) -> dict[str, Any]:
        return {
            **self.status.metadata(),
            "hostname": self.hostname,
            "renewed": self.renewed,
            "reason": self.reason,
            **({"trust_bundle": self.trust_bundle} if self.trust_bundle else {}),
            "source": self.status.source,
        }


def ensure_certificate(
    environment: str,
    hostname: str,
    acme: AcmeClient,
    router: Router,
    tls_folder: Path,
    renew_before_days: float,
    log: Callable[[str], None] = lambda _: None,
) -> CertificateOutcome:
    """Issue `hostname`'s certificate if it is missing or due (renewal_reason), refresh the trust bundle, and
    have the router present it (graceful reload); keep a fresh one."""
    public = router.public
    if public is None:
        raise CertificateError(
            f"the {environment} router has no public listeners: give RouterResource its tls_folder, "
            "challenge_port and challenge_root (shop_ops/definitions.py)"
        )
    try:
        status: CertificateStatus | None = read_certificate(public.certificate, public.certificate_key)
    except CertificateError:
        status = None
    reason = renewal_reason(status, renew_before_days, hostname)
    bundle = tls_folder / TRUST_BUNDLE
    if status is not None and reason is None:
        if not bundle.exists():
            refresh_trust_bundle(tls_folder)  # the live certificates' roots at least
        if router.running() and router.served_certificate() != leaf_der(public.certificate):
            log(f"{hostname}: the router does not present the certificate yet; installing it")
            router.install_certificate()
        return CertificateOutcome(
            environment, hostname, status, False, f"kept: {status.days_left:.1f} days left", False, str(bundle)
        )
    log(f"{hostname}: issuing a certificate ({reason})")
    previous_root = public.certificate.with_name("root.pem")
    still_served = [previous_root.read_text()] if previous_root.exists() else []
    issued = acme.issue(hostname, public.challenge_root, public.certificate, public.certificate_key)
    if issued.account_registered:
        log(f"registered the ACME account at {acme.directory_url} (first use, or the CA restarted)")
    # The old root stays trusted until the router presents the new certificate, then only live ones count.
    refresh_trust_bundle(tls_folder, [issued.root, *still_served])
    router.install_certificate()
    refresh_trust_bundle(tls_folder, [issued.root])
    new_status = read_certificate(public.certificate, public.certificate_key)
    log(f"{hostname}: serving serial {new_status.serial}, valid until {new_status.not_after.isoformat()}")
    return CertificateOutcome(
        environment, hostname, new_status, True, f"issued: {reason}", issued.account_registered, str(bundle)
    )


class CertificateSource(dg.ConfigurableResource):
    """Where the environments' certificates come from and how they are kept current (the certificates assets'
    resource): an ACME CA and the routers locally (CertificateAuthorityResource), ACM on aws (AcmCertificates)."""

    expiry_check_days: int = 21  # the assets' blocking check fails with fewer days left

    @abstractmethod
    def ensure(self, environment: str, log: Callable[[str], None]) -> CertificateOutcome:
        """The environment's certificate current and served; what was done."""


class CertificateAuthorityResource(CertificateSource):
    """Local profile: certificates from an ACME CA (Pebble) for the routers, kept in `tls_folder`."""

    router: RouterResource  # the routers that serve them (their public listeners, the challenge webroot)
    directory_url: str  # https://127.0.0.1:<tls.acme_port>/dir
    api_ca_file: str  # the CA file that signed the ACME server's own HTTPS certificate
    root_url: str  # where the CA serves its current root (Pebble: https://127.0.0.1:<management port>/roots/0)
    tls_folder: str  # certificates (<env>/), the account key, roots.pem
    domain: str = "shop.test"  # an environment's name is <env>.<domain>
    challenge_port: int = 5002  # where the CA validates HTTP-01 (named in errors)
    renew_before_days: int = 30

    def hostname(self, environment: str) -> str:
        return f"{environment}.{self.domain}"

    def client(self) -> AcmeClient:
        return AcmeClient(
            directory_url=self.directory_url,
            api_ca_file=Path(self.api_ca_file),
            root_url=self.root_url,
            account_key_file=Path(self.tls_folder) / ACCOUNT_KEY,
            challenge_port=self.challenge_port,
        )

    def ensure(self, environment: str, log: Callable[[str], None]) -> CertificateOutcome:
        return ensure_certificate(
            environment,
            self.hostname(environment),
            self.client(),
            self.router.router(environment),
            Path(self.tls_folder),
            self.renew_before_days,
            log,
        )


def _public_der(key: Any) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _fingerprint(certificate: x509.Certificate) -> bytes:
    return hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
