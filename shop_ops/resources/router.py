"""Each local environment's nginx router, and the resource that switches it: `/` to the serving slot's storefront, the API to its backend.

The upstreams live in an include file (`upstreams.conf`) that `switch` rewrites before
`nginx -s reload`; nginx's graceful reload keeps in-flight requests, so a switch drops none.
The serving slot is read back from that file, and every response carries `X-Shop-Slot`, so a
switch is confirmed by asking the router, not assumed. pid, temp files and logs stay in `folder`.
`Router` is the plain class (the local environment starts and stops it); `RouterResource` names
each environment's router folder, port and slot ports as fields.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx

from shop_ops.services.processes import ServiceError, pid_alive, pids_using, port_is_open, read_pid, wait_gone

SLOTS = ("blue", "green")
BACKEND_PATHS = ("/api/", "= /healthz", "= /readyz", "= /version")
_SLOT_LINE = re.compile(r"^# slot: (\w+) backend (\d+) frontend (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class Upstreams:
    """Where the router sends traffic: a slot name and its two ports on 127.0.0.1."""

    slot: str
    backend_port: int
    frontend_port: int


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found is None:
        raise ServiceError("nginx not found: install it (apt-get install nginx-light)")
    return found


CONFIRMATIONS = 5  # answers in a row from the new slot before a switch counts as done


@dataclass
class Router:
    """The nginx router of one environment, listening on 127.0.0.1:`port`."""

    name: str
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def conf(self) -> Path:
        return self.folder / "nginx.conf"

    @property
    def upstreams_file(self) -> Path:
        return self.folder / "upstreams.conf"

    @property
    def pidfile(self) -> Path:
        return self.folder / "nginx.pid"

    @property
    def error_log(self) -> Path:
        return self.folder / "error.log"

    # ------------------------------------------------------------------ config
    def _write_conf(self) -> None:
        tmp = self.folder / "tmp"
        for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        proxy = (
            "            proxy_pass http://{upstream};\n"
            "            proxy_http_version 1.1;\n"
            '            proxy_set_header Connection "";\n'
            "            proxy_set_header Host $http_host;\n"
            "            proxy_set_header X-Real-IP $remote_addr;\n"
            "            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n"
            "            proxy_set_header X-Forwarded-Proto $scheme;\n"
            "            proxy_next_upstream error timeout;\n"
            "            proxy_connect_timeout 3s;\n"
            "            proxy_read_timeout 60s;\n"
            # Run by root, nginx's workers run as `nobody`, who cannot enter a folder only root may
            # (root's home is mode 700): they must never need a file in `folder`. So no response or
            # request body goes to a temporary file; nginx passes bodies through its memory buffers.
            "            proxy_max_temp_file_size 0;\n"
            "            proxy_request_buffering off;\n"
        )
        backend = "".join(
            f"        location {path} {{\n{proxy.format(upstream='shop_backend')}        }}\n" for path in BACKEND_PATHS
        )
        text = f"""# The {self.name} router, written by shop-ops (shop_ops/resources/router.py); edits are overwritten.
worker_processes 1;
pid {_quoted(self.pidfile)};
error_log {_quoted(self.error_log)} warn;

events {{
    worker_connections 2048;
}}

http {{
    access_log {_quoted(self.folder / "access.log")} combined buffer=64k flush=2s;
    client_body_temp_path {_quoted(tmp / "client_body")};
    proxy_temp_path {_quoted(tmp / "proxy")};
    fastcgi_temp_path {_quoted(tmp / "fastcgi")};
    uwsgi_temp_path {_quoted(tmp / "uwsgi")};
    scgi_temp_path {_quoted(tmp / "scgi")};
    server_tokens off;
    keepalive_timeout 65s;

    # upstream shop_backend, upstream shop_frontend and $shop_slot: rewritten by a switch
    include {_quoted(self.upstreams_file)};

    server {{
        listen 127.0.0.1:{self.port} default_server;
        server_name _;
        add_header X-Shop-Slot $shop_slot always;

        location = /router-health {{
            access_log off;
            default_type text/plain;
            return 200 "ok\\n";
        }}
{backend}        location / {{
{proxy.format(upstream="shop_frontend")}        }}
    }}
}}
"""
        _write_if_changed(self.conf, text)

    @staticmethod
    def render_upstreams(target: Upstreams) -> str:
        return (
            f"# slot: {target.slot} backend {target.backend_port} frontend {target.frontend_port}\n"
            "# Written by shop-ops on each switch (then nginx -s reload); edits are overwritten.\n"
            "upstream shop_backend {\n"
            f"    server 127.0.0.1:{target.backend_port} max_fails=0;\n"
            "    keepalive 32;\n"
            "}\n"
            "upstream shop_frontend {\n"
            f"    server 127.0.0.1:{target.frontend_port} max_fails=0;\n"
            "    keepalive 16;\n"
            "}\n"
            "map $host $shop_slot {\n"
            f"    default {target.slot};\n"
            "}\n"
        )

    def serving(self) -> Upstreams | None:
        """What the upstream file points at (None before the first switch)."""
        try:
            match = _SLOT_LINE.search(self.upstreams_file.read_text())
        except OSError:
            return None
        if match is None:
            return None
        return Upstreams(match.group(1), int(match.group(2)), int(match.group(3)))

    def _nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [nginx_binary(), "-p", str(self.folder), "-e", str(self.error_log), "-c", str(self.conf), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
        )

    def test_config(self) -> None:
        result = self._nginx("-t", "-q")
        if result.returncode != 0:
            raise ServiceError(f"nginx config of the {self.name} router is invalid: {result.stderr.strip()}")

    # ------------------------------------------------------------------ lifecycle
    def running(self) -> bool:
        pid = read_pid(self.pidfile)
        return pid is not None and pid_alive(pid, "nginx")

    def answers(self) -> bool:
        try:
            return httpx.get(f"{self.url}/router-health", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def start(self, target: Upstreams, timeout: float = 10) -> None:
        """Start nginx pointing at `target` (or keep the running one and switch it there)."""
        if target.slot not in SLOTS:
            raise ServiceError(f"unknown slot {target.slot!r}: use blue or green")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._write_conf()
        if self.running():
            self.switch(target)
            return
        self.pidfile.unlink(missing_ok=True)
        if port_is_open(self.port):
            raise ServiceError(f"port {self.port} for the {self.name} router is already in use")
        _write_if_changed(self.upstreams_file, self.render_upstreams(target))
        self.test_config()
        # The daemonized master must not keep a pipe of ours open: its stderr goes to a file.
        startup_log = self.folder / "startup.log"
        with open(startup_log, "w") as log:
            code = subprocess.run(
                [nginx_binary(), "-p", str(self.folder), "-e", str(self.error_log), "-c", str(self.conf)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, timeout=30,
            ).returncode  # fmt: skip
        if code != 0:
            raise ServiceError(f"nginx ({self.name} router) did not start: {startup_log.read_text().strip()}")
        deadline = time.monotonic() + timeout
        while not self.answers():
            if time.monotonic() > deadline:
                self.stop()
                raise ServiceError(f"the {self.name} router on port {self.port} did not answer; see {self.error_log}")
            time.sleep(0.05)

    def switch(self, target: Upstreams, timeout: float = 10) -> None:
        """Point the router at `target`: rewrite the upstream file, check it, reload, confirm."""
        if target.slot not in SLOTS:
            raise ServiceError(f"unknown slot {target.slot!r}: use blue or green")
        previous = self.upstreams_file.read_text() if self.upstreams_file.exists() else None
        _write_if_changed(self.upstreams_file, self.render_upstreams(target))
        try:
            self.test_config()
        except ServiceError:
            if previous is not None:
                _write_if_changed(self.upstreams_file, previous)
            raise
        if not self.running():
            return  # the next start reads the file
        result = self._nginx("-s", "reload")
        if result.returncode != 0:
            raise ServiceError(f"nginx -s reload ({self.name} router): {result.stderr.strip()}")
        # Old workers may still accept a connection or two while they wind down: confirmed means
        # several answers in a row from the new configuration.
        deadline, in_a_row = time.monotonic() + timeout, 0
        while in_a_row < CONFIRMATIONS:
            in_a_row = in_a_row + 1 if self.slot_answering() == target.slot else 0
            if time.monotonic() > deadline:
                raise ServiceError(f"the {self.name} router did not switch to {target.slot} within {timeout:.0f}s")
            if in_a_row == 0:
                time.sleep(0.05)

    def slot_answering(self) -> str | None:
        """The slot the running router says it serves (its X-Shop-Slot header), None if it is down."""
        try:
            return httpx.get(f"{self.url}/router-health", timeout=2).headers.get("x-shop-slot")
        except httpx.TransportError:
            return None

    def reap_leftovers(self) -> list[int]:
        """Kill nginx processes a crash left holding this router's files (not running: no master)."""
        if self.running():
            return []
        pids = pids_using(self.folder, "nginx")
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        for pid in pids:
            wait_gone(pid, 5)
        self.pidfile.unlink(missing_ok=True)
        return pids

    def stop(self, timeout: float = 15) -> None:
        """Stop this router (by its pid file only) and wait until it is gone."""
        pid = read_pid(self.pidfile)
        if pid is None or not pid_alive(pid, "nginx"):
            self.pidfile.unlink(missing_ok=True)
            return
        os.kill(pid, signal.SIGTERM)
        if not wait_gone(pid, timeout):
            os.kill(pid, signal.SIGKILL)
            wait_gone(pid, 5)
        self.pidfile.unlink(missing_ok=True)


def _quoted(path: Path) -> str:
    """A path as one nginx argument, whatever spaces or quotes it holds."""
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _write_if_changed(path: Path, text: str) -> None:
    """Atomic replace (nginx never reads half a file), skipped when the content is the same."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RouterError(RuntimeError):
    """No router for that environment or slot."""


class SlotPortsConfig(dg.Config):
    """The two ports one slot's containers listen on (127.0.0.1)."""

    backend_port: int
    frontend_port: int


class EnvironmentRouter(dg.Config):
    """One environment's router: its folder (config, pid, logs), its port and both slots' ports."""

    folder: str
    port: int
    blue: SlotPortsConfig
    green: SlotPortsConfig


class RouterResource(dg.ConfigurableResource):
    """The routers of the local environments (`shop-ops local up` starts them; releases switch them)."""

    environments: dict[str, EnvironmentRouter]

    def _environment(self, environment: str) -> EnvironmentRouter:
        if environment not in self.environments:
            known = ", ".join(sorted(self.environments)) or "none"
            raise RouterError(f"no router for environment {environment!r} (known: {known})")
        return self.environments[environment]

    def router(self, environment: str) -> Router:
        env = self._environment(environment)
        return Router(environment, Path(env.folder), env.port)

    def slot_ports(self, environment: str, slot: str) -> Upstreams:
        """The ports `slot` of `environment` listens on."""
        if slot not in SLOTS:
            raise RouterError(f"unknown slot {slot!r}: use blue or green")
        ports = getattr(self._environment(environment), slot)
        return Upstreams(slot, ports.backend_port, ports.frontend_port)
