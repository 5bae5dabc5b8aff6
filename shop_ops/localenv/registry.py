"""The image registry: CNCF distribution (`docker-registry serve`) on 127.0.0.1, htpasswd auth.

Local credentials are generated once into `<dir>/credentials.json` (mode 0600) and never
printed; push webhooks (notifications) go to the URLs given.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from shop_ops.services.processes import ServiceError, port_is_open

USERNAME = "shop-ops"


@dataclass
class RegistryServer:
    """One registry process with filesystem storage under `datadir`."""

    datadir: Path
    port: int
    notify_urls: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def credentials_file(self) -> Path:
        return self.datadir / "credentials.json"

    @property
    def pidfile(self) -> Path:
        return self.datadir / "registry.pid"

    def credentials(self) -> tuple[str, str]:
        data = json.loads(self.credentials_file.read_text())
        return data["username"], data["password"]

    def _ensure_credentials(self) -> None:
        if self.credentials_file.exists():
            return
        htpasswd = shutil.which("htpasswd")
        if htpasswd is None:
            raise ServiceError("htpasswd not found: install apache2-utils (apt-get install apache2-utils)")
        password = secrets.token_urlsafe(24)
        hashed = subprocess.run(
            [htpasswd, "-nbB", USERNAME, password], capture_output=True, text=True, check=True
        ).stdout.strip()
        (self.datadir / "htpasswd").write_text(hashed + "\n")
        fd = os.open(self.credentials_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"username": USERNAME, "password": password}, fh)

    def _write_config(self) -> Path:
        config = {
            "version": 0.1,
            "log": {"level": "warn", "fields": {"service": "registry"}},
            "storage": {"filesystem": {"rootdirectory": str(self.datadir / "data")}, "delete": {"enabled": True}},
            "http": {"addr": self.address, "secret": secrets.token_hex(16)},
            "auth": {"htpasswd": {"realm": "shop-ops", "path": str(self.datadir / "htpasswd")}},
        }
        if self.notify_urls:
            config["notifications"] = {
                "endpoints": [
                    {"name": f"hook{n}", "url": url, "timeout": "2s", "threshold": 3, "backoff": "2s"}
                    for n, url in enumerate(self.notify_urls)
                ]
            }
        path = self.datadir / "config.yml"
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self, timeout: float = 15) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for the registry is already in use")
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ServiceError("docker-registry not found: install it (apt-get install docker-registry)")
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._ensure_credentials()
        config = self._write_config()
        log = open(self.datadir / "registry.log", "ab")
        self.process = subprocess.Popen(
            [binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(
                    f"the registry on port {self.port} did not start; see {self.datadir / 'registry.log'}"
                )
            time.sleep(0.05)

    def answers(self) -> bool:
        """The API answers (401 without credentials counts: it is up)."""
        try:
            return httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401)
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        pid = self.process.pid if self.process else None
        if pid is None and self.pidfile.exists():
            pid = int(self.pidfile.read_text())
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        if self.process is not None:
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.pidfile.unlink(missing_ok=True)
