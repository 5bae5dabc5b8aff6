"""compose.yaml: validates for Docker users, and comes up on podman's Docker API here."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import httpx

from shop_ops.localenv.docker_api import DockerApi
from shop_ops.resources.containers import DockerEngine
from shop_ops.services.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_compose_files_validate():
    for files in (["compose.yaml"], ["compose.yaml", "compose.podman.yaml"]):
        args = [a for f in files for a in ("-f", f)]
        result = subprocess.run(["docker-compose", *args, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr


def test_compose_stack_comes_up_on_podman_and_serves_the_shop(built, docker_api: DockerApi):
    ports = {name: str(free_port()) for name in ("FRONTEND", "BACKEND", "POSTGRES", "REDIS")}
    env = {
        **os.environ,
        "COMPOSE_PROJECT_NAME": f"shoptest{os.getpid()}",
        **{f"{name}_HOST_PORT": port for name, port in ports.items()},
    }
    script = str(ROOT / "scripts" / "compose-up-podman.sh")
    try:
        up = subprocess.run([script, "up"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert up.returncode == 0, up.stderr[-3000:]
        seed = subprocess.run([script, "seed"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
        assert seed.returncode == 0, seed.stderr[-3000:]
        front = f"http://127.0.0.1:{ports['FRONTEND']}"
        assert httpx.get(f"{front}/").status_code == 200
        assert httpx.get(f"{front}/api/products", params={"limit": 1}).json()["total"] > 0
        assert httpx.get(f"http://127.0.0.1:{ports['BACKEND']}/readyz").json()["status"] == "ready"
        # The shop's own containers run as compose.yaml's x-hardening says, as the pipeline runs them.
        engine = DockerEngine(docker_api.docker_host)
        project = {"com.docker.compose.project": env["COMPOSE_PROJECT_NAME"]}
        for service in ("backend", "frontend"):
            (found,) = engine.list_services(labels={**project, "com.docker.compose.service": service})
            host = engine.client.api.inspect_container(found.id)["HostConfig"]
            assert host["ReadonlyRootfs"] is True and "/tmp" in host["Tmpfs"], (service, host)
            assert "no-new-privileges" in " ".join(host["SecurityOpt"]) and len(host["CapDrop"]) >= 10, (service, host)
            assert (host["Memory"], host["NanoCpus"]) == (512 * 2**20, 10**9), (service, host)
        engine.close()
    finally:
        down = subprocess.run(
            [script, "down", "-v", "--keep-service"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert down.returncode == 0, down.stderr[-2000:]
