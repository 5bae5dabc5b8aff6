"""Test certificates made with `cryptography`: a root CA and the server certificates it signs (for real TLS servers in tests)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from shop_ops.resources.router import nginx_binary
from shop_ops.services.processes import free_port, launch_daemon, port_is_open, stop_own
from tests.support import wait_until


def private_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _alt_names(names: tuple[str, ...]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for name in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return x509.SubjectAlternativeName(entries)


@dataclass
class LocalCa:
    """A root CA (ECDSA P-256, 10 years) named `name`."""

    name: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def __post_init__(self) -> None:
        now = dt.datetime.now(dt.UTC)
        usage = x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
        )  # fmt: skip
        self.certificate = (
            x509.CertificateBuilder().subject_name(_name(self.name)).issuer_name(_name(self.name))
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(usage, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip

    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def write(self, path: Path) -> Path:
        path.write_bytes(self.pem())
        return path

    def server(self, names: tuple[str, ...], days: float = 90) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A server certificate for `names` (DNS names or IP addresses) valid `days` from now, and its key."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder().subject_name(_name(names[0])).issuer_name(self.certificate.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(_alt_names(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        return certificate, key

    def server_files(self, folder: Path, names: tuple[str, ...], days: float = 90) -> tuple[Path, Path]:
        """`server()` written to `folder`: (cert.pem, key.pem with mode 0600)."""
        certificate, key = self.server(names, days)
        folder.mkdir(parents=True, exist_ok=True)
        cert_path, key_path = folder / "cert.pem", folder / "key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(private_pem(key))
        key_path.chmod(0o600)
        return cert_path, key_path


# TLS endpoints for scanner tests: one real nginx with three listeners, certificates from LocalCa roots.
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


@contextmanager
def tls_endpoints(folder: Path) -> Iterator[Endpoints]:
    """A real nginx on 127.0.0.1 with three TLS listeners for NAME (see Endpoints), its files in `folder`."""
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
