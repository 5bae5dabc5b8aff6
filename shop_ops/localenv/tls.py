"""The local environments' HTTPS: Pebble (the ACME CA and its DNS) and each router's certificate, for `local up`.

`up_ca` starts Pebble (a new root at each start: the trust bundle `<state>/tls/roots.pem` gets it at
once, beside every root that still signs a live certificate); `up_certificates`, after the routers
run, issues or renews each environment's certificate through the `certificate_authority` resource
the `certificates` assets use (shop_ops/security/certificates.py), so `up` and the daily
`renew_certificates` job do one thing one way. Status reads the certificates from disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from shop_ops.resources.router import certificate_files
from shop_ops.security.certificates import read_certificate, refresh_trust_bundle
from shop_ops.services.pebble import Pebble
from shop_ops.settings import Settings

Say = Callable[[str], None]
Step = Callable[[str], AbstractContextManager[None]]
Undo = Callable[[str, Callable[[], None]], None]
Stop = Callable[..., None]


class LocalTls:
    """Pebble on the `tls:` ports, and the environments' certificates in `Settings.tls_folder()`."""

    def __init__(self, settings: Settings) -> None:
        from shop_ops.definitions import pebble_service  # imports dagster's definitions: built once, here

        self.settings = settings
        self.folder = settings.tls_folder()
        self.pebble: Pebble = pebble_service(settings)

    @property
    def trust_bundle(self) -> Path:
        return self.folder / "roots.pem"

    def hostname(self, environment: str) -> str:
        return self.settings.tls.hostname(environment)

    def https_url(self, environment: str) -> str:
        port = self.settings.local_environments()[environment].https_port
        return f"https://{self.hostname(environment)}:{port}"

    def up_ca(self, step: Step, say: Say, undo: Undo) -> None:
        if self.pebble.running():
            say(f"pebble (ACME) on {self.pebble.directory_url} ... already running")
            return
        with step(
            f"starting pebble (ACME) on {self.pebble.directory_url}, its DNS on 127.0.0.1:{self.settings.tls.dns_port}"
        ):
            self.pebble.start()
            # Before any client loads the bundle: the new root beside every root that still signs a live certificate.
            refresh_trust_bundle(self.folder, [self.pebble.current_root()])
        undo("pebble", self.pebble.stop)

    def up_certificates(self, step: Step, say: Say) -> None:
        from shop_ops.definitions import certificate_source

        source = certificate_source(self.settings)
        for name in self.settings.local_environments():
            with step(f"certificate of {self.hostname(name)}"):
                outcome = source.ensure(name, lambda line: None)
            say(f"  {outcome.reason}")

    def down(self, stop: Stop) -> None:
        stop("pebble", self.pebble.running, self.pebble.stop)

    def ports(self) -> Iterator[tuple[int, str, Callable[[], bool]]]:
        tls = self.settings.tls
        yield tls.acme_port, "pebble (ACME)", self.pebble.running
        yield tls.acme_management_port, "pebble (management)", self.pebble.running
        yield tls.dns_port, "pebble (DNS)", self.pebble.running

    def certificate(self, environment: str) -> dict[str, Any]:
        """The environment's certificate as its router serves it from disk: days left, names; {} without one."""
        chain, key = certificate_files(self.folder, environment)
        if not chain.is_file():
            return {}
        status = read_certificate(chain, key)
        return {"days_to_expiry": round(status.days_left, 1), "not_after": status.not_after.isoformat()}

    def status(self) -> dict[str, Any]:
        return {
            "pebble": {
                "url": self.pebble.directory_url,
                "up": self.pebble.running(),
                "trust_bundle": str(self.trust_bundle),
            }
        }

    def urls(self) -> list[tuple[str, str]]:
        lines = []
        for name, env in self.settings.local_environments().items():
            host = self.hostname(name)
            lines.append(
                (
                    f"{name} shop (HTTPS)",
                    f"{self.https_url(name)}/  (curl --resolve {host}:{env.https_port}:127.0.0.1 "
                    f"--cacert {self.trust_bundle} {self.https_url(name)}/; http://127.0.0.1:{env.http_port} redirects)",
                )
            )
        lines.append(("ACME CA (pebble)", f"{self.pebble.directory_url}  (local roots: {self.trust_bundle})"))
        return lines
