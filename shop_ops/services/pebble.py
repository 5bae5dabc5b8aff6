"""Pebble, Let's Encrypt's test ACME server, with pebble-challtestsrv as its DNS, as child processes on 127.0.0.1.

Debian's `pebble` 2.4: the ACME directory at https://127.0.0.1:<acme_port>/dir, its management
interface (the CA's current root at /roots/0, intermediate at /intermediates/0) on
`management_port`, HTTP-01 validation of every name on `challenge_port` (where the routers answer).
Names resolve through pebble-challtestsrv on `dns_port`, which answers every A query with
127.0.0.1 (and no AAAA: the routers listen on IPv4 loopback only); its other listeners are off.

What shapes its callers: Pebble makes a new root and intermediate at every start, and keeps
accounts, orders and certificates in memory only (a client registers again after a restart; the
trust bundle keeps every root that signed a live certificate: shop_ops/security/certificates.py).
Certificates are valid `validity_seconds` (Pebble 2.4's `certificateValidityPeriod`; its own
default is 5 years). Deterministic on purpose: no random validation delays (PEBBLE_VA_NOSLEEP), no
nonce rejected as a test of clients (PEBBLE_WFE_NONCEREJECT=0), no authorization reused, so every
order is validated (PEBBLE_AUTHZREUSE=0). Pebble has no OCSP responder.

Pebble's API is HTTPS only: its server certificate and key are made here (`api-key.pem` 0600),
signed by a CA made for that alone whose key is thrown away; clients trust `api_ca_file`.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shop_ops.services.files import write_private
from shop_ops.services.processes import (
    ServiceError,
    free_port,
    launch_daemon,
    pid_alive,
    read_pid,
    require_free_port,
    stop_own,
)

DEFAULT_VALIDITY_SECONDS = 90 * 86400
API_CERT_DAYS = 825  # Pebble's own API certificate; made again when fewer than API_CERT_RENEW_DAYS are left
API_CERT_RENEW_DAYS = 30


@dataclass
class Pebble:
    """Pebble on 127.0.0.1:`acme_port` (+ `management_port`), its DNS on `dns_port`; config, keys, pids, logs in `folder`."""

    folder: Path
    acme_port: int
    management_port: int
    dns_port: int
    challenge_port: int
    validity_seconds: int = DEFAULT_VALIDITY_SECONDS
    process: subprocess.Popen[bytes] | None = None
    dns_process: subprocess.Popen[bytes] | None = None

    @property
    def directory_url(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def management_url(self) -> str:
        return f"https://127.0.0.1:{self.management_port}"

    @property
    def api_ca_file(self) -> Path:
        """The CA that signed Pebble's API certificate: what ACME clients trust to talk to Pebble (not a web root)."""
        return self.folder / "api-ca.pem"

    @property
    def config_file(self) -> Path:
        return self.folder / "pebble-config.json"

    @property
    def pidfile(self) -> Path:
        return self.folder / "pebble.pid"

    @property
    def dns_pidfile(self) -> Path:
        return self.folder / "challtestsrv.pid"

    @property
    def log(self) -> Path:
        return self.folder / "pebble.log"

    @property
    def dns_log(self) -> Path:
        return self.folder / "challtestsrv.log"

    def start(self, timeout: float = 20) -> None:
        """Start the DNS and Pebble; return once the ACME directory answers over HTTPS."""
        pebble, challtestsrv = shutil.which("pebble"), shutil.which("pebble-challtestsrv")
        if pebble is None or challtestsrv is None:
            raise ServiceError(
                "pebble or pebble-challtestsrv not found: install Debian's pebble package (make install)"
            )
        if not 0 < self.validity_seconds <= 366 * 86400:
            raise ServiceError(f"certificate validity of {self.validity_seconds}s: use 1 s to 366 days")
        for port, what in ((self.acme_port, "Pebble"), (self.management_port, "Pebble's management interface")):
            require_free_port(port, what)
        require_free_port(self.dns_port, "Pebble's DNS (pebble-challtestsrv)")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._ensure_api_certificate()
        self.config_file.write_text(json.dumps({"pebble": self._config()}, indent=2) + "\n")
        # challtestsrv's management API (mock DNS data) cannot be switched off: a free loopback port nobody uses.
        dns_args = [
            challtestsrv, "-dns01", f"127.0.0.1:{self.dns_port}", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
            "-http01", "", "-https01", "", "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}",
        ]  # fmt: skip
        self.dns_process = launch_daemon(dns_args, self.dns_log, self.dns_pidfile)
        env = {
            **os.environ,
            "PEBBLE_VA_NOSLEEP": "1",
            "PEBBLE_WFE_NONCEREJECT": "0",
            "PEBBLE_AUTHZREUSE": "0",
        }
        args = [pebble, "-config", str(self.config_file), "-dnsserver", f"127.0.0.1:{self.dns_port}"]
        self.process = launch_daemon(args, self.log, self.pidfile, env=env)
        try:
            self._wait_ready(timeout)
        except ServiceError:
            self.stop()
            raise

    def _config(self) -> dict[str, object]:
        return {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.folder / "api-cert.pem"),
            "privateKey": str(self.folder / "api-key.pem"),
            "httpPort": self.challenge_port,
            "tlsPort": self.challenge_port,  # TLS-ALPN-01 is not used; Pebble needs a number
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            "certificateValidityPeriod": self.validity_seconds,
        }

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            for process, log in ((self.process, self.log), (self.dns_process, self.dns_log)):
                if process is not None and process.poll() is not None:
                    tail = log.read_text(errors="replace")[-1500:]
                    raise ServiceError(f"{process.args[0]} exited ({process.returncode}); see {log}: {tail}")
            try:
                if (
                    httpx.get(
                        self.directory_url, verify=ssl.create_default_context(cafile=self.api_ca_file), timeout=1
                    ).status_code
                    == 200
                ):
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"Pebble's directory {self.directory_url} did not answer within {timeout:.0f}s; see {self.log}"
                )
            time.sleep(0.1)

    def current_root(self) -> str:
        """The PEM of the root Pebble signs with now (a new one at every start)."""
        try:
            response = httpx.get(
                f"{self.management_url}/roots/0", verify=ssl.create_default_context(cafile=self.api_ca_file), timeout=5
            )
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise ServiceError(f"Pebble's management interface {self.management_url}/roots/0: {exc}") from None
        return response.text

    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, str(self.config_file))

    def stop(self, timeout: float = 10) -> None:
        """Stop Pebble and its DNS (our own processes, or the ones our pid files name)."""
        stop_own(self.process, self.pidfile, lambda pid: pid_alive(pid, str(self.config_file)), timeout, "Pebble")
        stop_own(
            self.dns_process,
            self.dns_pidfile,
            lambda pid: pid_alive(pid, "pebble-challtestsrv"),
            timeout,
            "pebble-challtestsrv",
        )
        self.process = self.dns_process = None

    def _ensure_api_certificate(self) -> None:
        """Pebble's HTTPS certificate for 127.0.0.1, signed by a throw-away CA (`api_ca_file`); kept while valid."""
        cert_file, key_file = self.folder / "api-cert.pem", self.folder / "api-key.pem"
        if cert_file.exists() and key_file.exists() and self.api_ca_file.exists():
            left = x509.load_pem_x509_certificate(cert_file.read_bytes()).not_valid_after_utc - _now()
            if left > dt.timedelta(days=API_CERT_RENEW_DAYS):
                return
        ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
        ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "shop-ops local Pebble API CA")])
        start, end = _now() - dt.timedelta(minutes=5), _now() + dt.timedelta(days=API_CERT_DAYS)
        ca = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.IPAddress(ipaddress.IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256())
        )
        pem = serialization.Encoding.PEM
        write_private(
            key_file,
            key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
        )
        cert_file.write_bytes(leaf.public_bytes(pem))
        self.api_ca_file.write_bytes(ca.public_bytes(pem))  # the CA's key is not kept: nothing else is signed


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
