"""The image registry process: CNCF distribution (`docker-registry serve`) on 127.0.0.1, htpasswd auth, its maintenance.

Local credentials are generated once into `<dir>/credentials.json` (mode 0600) and never
printed; push webhooks (notifications) go to the URLs given. Maintenance (registry_retention):
the registry restarted in read-only mode (pulls keep working, pushes and deletes are refused),
`docker-registry garbage-collect` over its storage, then restarted writable. The local
environment starts it; the pipeline restarts it from its folder (`RegistryServer.existing`).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from shop_ops.services.processes import ServiceError, pid_alive, port_is_open, read_pid, wait_gone

USERNAME = "shop-ops"
CONFIG = "config.yml"


@dataclass(frozen=True)
class GarbageCollection:
    """One `garbage-collect` run: storage bytes before and after, the blobs it removed, its output's tail."""

    bytes_before: int
    bytes_after: int
    blobs_deleted: int
    seconds: float
    output_tail: str

    @property
    def bytes_freed(self) -> int:
        return self.bytes_before - self.bytes_after


def folder_bytes(folder: Path) -> int:
    """The bytes of every file under `folder` (what `du -b` counts for regular files); 0 when it is absent."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except FileNotFoundError:  # removed while walking
                continue
    return total


@dataclass
class RegistryServer:
    """One registry process with filesystem storage under `datadir`."""

    datadir: Path
    port: int
    notify_urls: list[str] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None

    @classmethod
    def existing(cls, datadir: Path) -> RegistryServer:
        """The registry a local environment runs from `datadir` (port and webhooks read from its config.yml)."""
        path = datadir / CONFIG
        try:
            config = yaml.safe_load(path.read_text()) or {}
            port = int(str(config["http"]["addr"]).rsplit(":", 1)[1])
        except FileNotFoundError:
            raise ServiceError(f"no registry config at {path}: start the registry with `shop-ops local up`") from None
        except (yaml.YAMLError, KeyError, TypeError, ValueError, IndexError):
            raise ServiceError(f"{path} is not a registry config with http.addr (host:port)") from None
        endpoints = ((config.get("notifications") or {}).get("endpoints")) or []
        return cls(datadir=datadir, port=port, notify_urls=[str(e["url"]) for e in endpoints if "url" in e])

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

    @property
    def config_file(self) -> Path:
        return self.datadir / CONFIG

    @property
    def storage(self) -> Path:
        """The blobs and repositories (filesystem storage driver's root)."""
        return self.datadir / "data"

    @property
    def log_file(self) -> Path:
        return self.datadir / "registry.log"

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

    def _write_config(self, readonly: bool = False) -> Path:
        storage: dict = {"filesystem": {"rootdirectory": str(self.storage)}, "delete": {"enabled": True}}
        if readonly:
            storage["maintenance"] = {"readonly": {"enabled": True}}
        config = {
            "version": 0.1,
            "log": {"level": "warn", "fields": {"service": "registry"}},
            "storage": storage,
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
        # 0600: the config holds the http secret.
        fd = os.open(self.config_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            yaml.safe_dump(config, fh)
        return self.config_file

    def read_only(self) -> bool:
        """Whether the config the registry runs with has storage.maintenance.readonly on."""
        try:
            config = yaml.safe_load(self.config_file.read_text()) or {}
        except FileNotFoundError:
            return False
        return bool((((config.get("storage") or {}).get("maintenance") or {}).get("readonly") or {}).get("enabled"))

    @staticmethod
    def _binary() -> str:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise ServiceError("docker-registry not found: install it (apt-get install docker-registry)")
        return binary

    def start(self, timeout: float = 15, readonly: bool = False) -> None:
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for the registry is already in use")
        binary = self._binary()
        self.datadir.mkdir(parents=True, exist_ok=True)
        self._ensure_credentials()
        config = self._write_config(readonly=readonly)
        log = open(self.log_file, "ab")
        # A new session: the registry outlives the process that (re)started it (a run worker, the CLI).
        self.process = subprocess.Popen(
            [binary, "serve", str(config)], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )
        log.close()
        self.pidfile.write_text(str(self.process.pid))
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the registry on port {self.port} did not start; see {self.log_file}")
            time.sleep(0.05)

    def answers(self) -> bool:
        """The API answers (401 without credentials counts: it is up)."""
        try:
            return httpx.get(f"{self.url}/v2/", timeout=1).status_code in (200, 401)
        except httpx.TransportError:
            return False

    def running(self) -> bool:
        """The pid file names a live docker-registry process."""
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "docker-registry")

    def stop(self, timeout: float = 10) -> None:
        """Stop the process the pid file names (whoever started it: a restart for garbage collection may have
        been another object's), and reap this object's own child if it has one."""
        child = self.process
        self.process = None
        recorded = read_pid(self.pidfile)
        if child is not None and child.poll() is None and recorded in (None, child.pid):
            child.terminate()
            try:
                child.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        elif recorded is not None and pid_alive(recorded, "docker-registry"):  # never kill a stranger (stale pid)
            try:
                os.kill(recorded, signal.SIGTERM)
            except ProcessLookupError:
                pass
            if not wait_gone(recorded, timeout):
                os.kill(recorded, signal.SIGKILL)
                wait_gone(recorded, 5)
        if child is not None and child.poll() is None and child.pid != recorded:
            child.terminate()  # ours, though the pid file names another: stop it too
        if child is not None:
            try:
                child.wait(timeout=timeout)  # reap it (it may have been stopped by another object)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        self.pidfile.unlink(missing_ok=True)
        deadline = time.monotonic() + timeout
        while port_is_open(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def restart(self, readonly: bool, timeout: float = 15) -> None:
        """Stop the registry and start it again, read-only or writable (same port, credentials and webhooks)."""
        self.stop()
        self.start(timeout=timeout, readonly=readonly)

    @contextmanager
    def maintenance(self) -> Iterator[None]:
        """The registry read-only for the block, writable again after it (also when the block fails)."""
        if not self.running():
            raise ServiceError(
                f"the registry of {self.datadir} is not running (pid file {self.pidfile}): start it with "
                "`shop-ops local up`; garbage collection restarts a running registry only"
            )
        self.restart(readonly=True)
        try:
            yield
        finally:
            self.restart(readonly=False)

    def garbage_collect(self, delete_untagged: bool = False, timeout: float = 600) -> GarbageCollection:
        """`docker-registry garbage-collect` over the storage; refused unless the registry is read-only or stopped.

        Without `delete_untagged` (the default) only blobs no manifest references go: a manifest
        kept by digest alone (a release pinned by digest whose tag moved) keeps its layers.
        """
        if self.running() and not self.read_only():
            raise ServiceError(
                "garbage collection needs the registry read-only or stopped (a push during it would lose blobs): "
                "run it inside RegistryServer.maintenance()"
            )
        before, started = folder_bytes(self.storage), time.monotonic()
        command = [self._binary(), "garbage-collect", str(self.config_file)]
        if delete_untagged:
            command.append("--delete-untagged")
        try:
            result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ServiceError(f"docker-registry garbage-collect did not finish in {timeout:.0f} s") from None
        output = (result.stdout + result.stderr).strip()
        if result.returncode != 0:
            raise ServiceError(f"docker-registry garbage-collect failed (exit {result.returncode}): {output[-800:]}")
        return GarbageCollection(
            bytes_before=before,
            bytes_after=folder_bytes(self.storage),
            blobs_deleted=output.count("blob eligible for deletion"),
            seconds=round(time.monotonic() - started, 2),
            output_tail="\n".join(output.splitlines()[-5:]),
        )
