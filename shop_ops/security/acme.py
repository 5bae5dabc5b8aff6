"""The ACME client (RFC 8555, the `acme` library certbot is built on): one certificate for one name, by HTTP-01.

`AcmeClient.issue` registers the account (again when the CA forgot it: Pebble keeps accounts in
memory, and ACME's newAccount with a known key just answers the existing account), orders the
name, puts each HTTP-01 token into the challenge webroot the routers serve, lets the CA validate,
finalizes with a fresh ECDSA P-256 key, downloads the full chain, writes key (0600) and chain
atomically, and removes the tokens. The account key (ECDSA P-256, 0600) stays in the TLS folder.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

import httpx
import josepy as jose
import requests
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shop_ops.resources.router import ACME_CHALLENGE_PATH
from shop_ops.services.files import fsync_dir, write_private, write_public

ORDER_TIMEOUT_SECONDS = 90
USER_AGENT = "shop-ops"


class CertificateError(RuntimeError):
    """A certificate could not be issued, read or installed; the message names the cause and the fix."""


@dataclass(frozen=True)
class Issued:
    """One issued certificate: where its files are and whether the account had to be registered for it."""

    certificate: Path  # full chain, leaf first
    key: Path
    root: str  # PEM of the root that signed the chain's intermediate
    account_registered: bool  # a new account was created at the CA (first use, or the CA forgot it)


@dataclass(frozen=True)
class AcmeClient:
    """An ACME account at `directory_url`, trusting the CA's API through `api_ca_file`.

    `root_url`: where the CA publishes the root it signs with now (Pebble's management `/roots/0`),
    checked against the issued chain and kept for the trust bundle. `challenge_port`: where the CA
    validates HTTP-01 (only named in errors).
    """

    directory_url: str
    api_ca_file: Path
    root_url: str
    account_key_file: Path
    challenge_port: int = 80

    def issue(self, hostname: str, challenge_root: Path, certificate: Path, key: Path) -> Issued:
        """A new certificate for `hostname` into `certificate` (full chain) and `key` (0600), both replaced atomically."""
        acme, registered = self._connect()
        private_key = ec.generate_private_key(ec.SECP256R1())
        key_pem = private_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        deadline = dt.datetime.now() + dt.timedelta(seconds=ORDER_TIMEOUT_SECONDS)  # the library compares naive times
        tokens: list[Path] = []
        try:
            order = acme.new_order(crypto_util.make_csr(key_pem, [hostname]))
            for authorization in order.authorizations:
                if authorization.body.status == messages.STATUS_VALID:
                    continue
                challenge = _http01(authorization, hostname)
                response, validation = challenge.response_and_validation(acme.net.key)
                tokens.append(_write_token(challenge_root, challenge.chall.encode("token"), validation))
                acme.answer_challenge(challenge, response)
            order = acme.poll_and_finalize(order, deadline)
        except errors.ValidationError as exc:
            raise CertificateError(self._validation_failure(exc, hostname)) from None
        except errors.TimeoutError:
            raise CertificateError(
                f"the ACME order for {hostname} at {self.directory_url} was not done within {ORDER_TIMEOUT_SECONDS}s"
            ) from None
        except (messages.Error, errors.Error) as exc:
            raise CertificateError(
                f"the ACME server {self.directory_url} refused the order for {hostname}: {exc}"
            ) from None
        except requests.exceptions.RequestException as exc:
            raise CertificateError(self._unreachable(exc)) from None
        finally:
            for token in tokens:
                token.unlink(missing_ok=True)
        chain = order.fullchain_pem
        root = self._root_of(chain, hostname)
        certificate.parent.mkdir(parents=True, exist_ok=True)
        # The key first: a crash between the two leaves a key that does not match the chain, which the
        # certificates flow reads as "no certificate" and issues again (read_certificate's key_matches).
        write_private(key, key_pem.decode())
        write_public(certificate, chain)
        write_public(certificate.with_name("root.pem"), root)
        fsync_dir(certificate.parent)
        return Issued(certificate, key, root, registered)

    def _connect(self) -> tuple[client.ClientV2, bool]:
        """A client with the account registered; True when the CA created it now."""
        if not self.api_ca_file.is_file():
            raise CertificateError(
                f"{self.api_ca_file}, the CA file of the ACME server's own HTTPS certificate, does not exist: "
                "Pebble writes it when it starts (`shop-ops local up`)"
            )
        account_key = jose.JWKEC(key=_account_key(self.account_key_file))
        net = client.ClientNetwork(account_key, alg=jose.ES256, user_agent=USER_AGENT, timeout=10)
        net.verify_ssl = str(self.api_ca_file)  # type: ignore[assignment]  # requests takes a CA file here
        try:
            directory = client.ClientV2.get_directory(self.directory_url, net)
            acme = client.ClientV2(directory, net)
            try:
                acme.new_account(messages.NewRegistration.from_data(terms_of_service_agreed=True))
                return acme, True
            except errors.ConflictError as existing:  # this key's account exists: use it
                net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
                return acme, False
        except requests.exceptions.RequestException as exc:
            raise CertificateError(self._unreachable(exc)) from None
        except (messages.Error, errors.Error) as exc:
            raise CertificateError(f"the ACME server {self.directory_url} refused the account: {exc}") from None

    def _unreachable(self, exc: Exception) -> str:
        return (
            f"the ACME server {self.directory_url} does not answer ({type(exc).__name__}: {str(exc)[:300]}): "
            "start it with `shop-ops local up` (Pebble), or check tls.acme_port"
        )

    def _validation_failure(self, exc: errors.ValidationError, hostname: str) -> str:
        problems = []
        for authorization in exc.failed_authzrs:
            for challenge in authorization.body.challenges:
                if challenge.error is None:
                    continue
                url = f"http://{hostname}:{self.challenge_port}{challenge.chall.path}"
                problems.append(f"{url}: {challenge.error.detail or challenge.error.typ}")
        return (
            f"the ACME server could not validate {hostname}: " + "; ".join(problems or ["no detail given"]) + ". "
            "The routers answer challenges on tls.challenge_port from the shared webroot: is a router running "
            "with its public listeners, and can nginx's workers read the webroot?"
        )

    def _root_of(self, chain: str, hostname: str) -> str:
        """The CA's current root, checked to have signed the top of `chain`."""
        try:
            response = httpx.get(self.root_url, verify=ssl.create_default_context(cafile=self.api_ca_file), timeout=5)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise CertificateError(f"the CA's root at {self.root_url}: {exc}") from None
        root = x509.load_pem_x509_certificate(response.content)
        top = x509.load_pem_x509_certificates(chain.encode())[-1]
        try:
            top.verify_directly_issued_by(root)
        except (InvalidSignature, ValueError, TypeError) as exc:
            raise CertificateError(
                f"the chain issued for {hostname} was not signed by the root {self.root_url} serves now "
                f"({type(exc).__name__}): did the CA restart during the order? Run it again"
            ) from None
        return root.public_bytes(serialization.Encoding.PEM).decode()


def _http01(authorization: messages.AuthorizationResource, hostname: str) -> messages.ChallengeBody:
    for challenge in authorization.body.challenges:
        if isinstance(challenge.chall, challenges.HTTP01):
            return challenge
    raise CertificateError(f"the ACME server offers no HTTP-01 challenge for {hostname}")


def _write_token(challenge_root: Path, token: str, validation: str) -> Path:
    """The key authorization at <root>/.well-known/acme-challenge/<token>, readable by nginx's workers."""
    folder = challenge_root / ACME_CHALLENGE_PATH.strip("/")
    for path in (challenge_root, challenge_root / ".well-known", folder):
        path.mkdir(mode=0o755, exist_ok=True)
        # The webroot may sit in the shared temp folder under a predictable name: never follow a link or
        # write into a folder someone else made there.
        info = path.lstat()
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
            raise CertificateError(
                f"{path} is a link or belongs to another user: not used as the ACME challenge webroot; remove it"
            )
        path.chmod(0o755)  # whatever the umask: the workers (`nobody` under root) must pass and list it
    path = folder / token
    write_public(path, validation)
    return path


def _account_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The account's ECDSA P-256 key from `path` (0600), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        write_private(path, pem.decode())
        return key
    loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(loaded, ec.EllipticCurvePrivateKey):
        raise CertificateError(f"{path} is not an ECDSA account key: move it away and a new account is made")
    return loaded
