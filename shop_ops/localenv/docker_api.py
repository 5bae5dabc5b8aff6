"""The Docker Engine API: a running Docker engine if one answers, else `podman system service`.

podman's settings (runc, cgroupfs, ulimits, file events, overlay storage under the state
folder, insecure local registries) are written by scripts/podman-env.sh; this module runs
that script so there is one way of configuring podman.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shop_ops.resources.containers import docker_host_for, existing_docker, ping, podman_socket
from shop_ops.services.processes import ServiceError

ROOT = Path(__file__).resolve().parents[2]
PODMAN_ENV = ROOT / "scripts" / "podman-env.sh"


@dataclass
class DockerApi:
    """Where the Docker API is, and whether we started it (then `stop` stops it)."""

    state_dir: Path

    @property
    def podman_state(self) -> Path:
        return self.state_dir / "podman"

    @property
    def podman_socket(self) -> Path:
        return podman_socket(self.state_dir)

    def _script(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "SHOP_OPS_STATE": str(self.state_dir)}
        return subprocess.run(["bash", str(PODMAN_ENV), *args], env=env, capture_output=True, text=True)

    def podman_env(self) -> dict[str, str]:
        """CONTAINERS_* variables for podman/buildah/skopeo commands against our storage."""
        result = self._script("env")
        if result.returncode != 0:
            raise ServiceError(f"podman settings: {result.stderr.strip()}")
        env = {}
        for line in result.stdout.splitlines():
            name, _, value = line.removeprefix("export ").partition("=")
            env[name] = "".join(shlex.split(value))  # shell-quoted (printf %q): a space comes as "\ "
        return env

    def existing_docker(self) -> str | None:
        """unix:// URL of a Docker engine that answers now, if there is one."""
        return existing_docker(self.state_dir)

    @property
    def docker_host(self) -> str:
        return docker_host_for(self.state_dir)

    def allow_insecure_registry(self, address: str) -> None:
        """Let podman push to a plain-HTTP registry at `address` (before the service starts)."""
        result = self._script("registry-add", address)
        if result.returncode != 0:
            raise ServiceError(f"registries.conf: {result.stderr.strip()}")

    def start(self) -> str:
        """Start podman's API unless an engine already answers; returns the DOCKER_HOST URL."""
        existing = self.existing_docker()
        if existing:
            return existing
        result = self._script("service-start")
        if result.returncode != 0:
            raise ServiceError(f"podman system service did not start: {result.stderr.strip()[-800:]}")
        return f"unix://{self.podman_socket}"

    def answers(self) -> bool:
        return ping(self.docker_host)

    def stop(self) -> None:
        """Stop the podman service started from this state folder (never a Docker engine), and unmount its storage."""
        self._script("service-stop")
