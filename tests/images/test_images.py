"""The shop's images: built here through podman from the local bases, within budget, non-root,
with HEALTHCHECK and labels, and they serve the shop against real PostgreSQL and Redis."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from shop.migrate import head_revision
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from tests.support import new_database

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(docker_api: DockerApi) -> docker.DockerClient:
    return docker.DockerClient(base_url=docker_api.docker_host)


def git_sha() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()


def healthcheck(docker_api: DockerApi, ref: str) -> list[str]:
    """The image's HEALTHCHECK command (podman's Docker API leaves it out of Config; its CLI has it)."""
    env = {**os.environ, **docker_api.podman_env()}
    out = subprocess.run(["podman", "image", "inspect", ref, "--format", "{{json .HealthCheck}}"], env=env,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return (json.loads(out) or {}).get("Test") or []


def test_images_are_within_budget_non_root_with_healthcheck_and_labels(
    built: dict, client: docker.DockerClient, docker_api: DockerApi
):
    version = (ROOT / "VERSION").read_text().strip()
    assert built["version"] == version
    budgets = {"backend": 500, "frontend": 100}
    for image in built["images"]:
        assert image["size_mb"] < budgets[image["name"]], image
        attrs = client.images.get(image["ref"]).attrs
        config = attrs["Config"]
        user = config.get("User", "")
        assert user and user.split(":")[0] not in ("", "0", "root"), f"{image['name']} runs as {user!r}"
        assert healthcheck(docker_api, image["ref"])[:1] == ["CMD"], f"{image['name']} has no HEALTHCHECK"
        labels = config.get("Labels") or {}
        assert labels["org.opencontainers.image.version"] == version
        assert labels["org.opencontainers.image.revision"] == built["git_commit"] == git_sha()
        assert image["ref"].endswith(f":{version}-{git_sha()}")


@pytest.fixture
def backend(
    built: dict, client: docker.DockerClient, postgres: PostgresCluster, redis_server: RedisServer
) -> Iterator[str]:
    ref = next(i["ref"] for i in built["images"] if i["name"] == "backend")
    db_url = new_database(postgres, prefix="image")
    env = {"SHOP_DATABASE_URL": db_url, "SHOP_REDIS_URL": redis_server.url(3), "SHOP_HOST": "127.0.0.1"}
    migrate = client.containers.run(ref, ["shop-migrate"], environment=env, network_mode="host", detach=True)
    assert migrate.wait(timeout=120)["StatusCode"] == 0, migrate.logs().decode()[-2000:]
    migrate.remove()
    seed = client.containers.run(
        ref, ["shop-seed", "--products", "200"], environment=env, network_mode="host", detach=True
    )
    assert seed.wait(timeout=120)["StatusCode"] == 0
    seed.remove()
    port = free_port()
    container = client.containers.run(
        ref, environment={**env, "SHOP_PORT": str(port)}, network_mode="host", detach=True, stop_signal="SIGTERM"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/readyz", container)
        yield url
    finally:
        container.stop(timeout=10)
        container.remove()


def wait_for(url: str, container: docker.models.containers.Container, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        container.reload()
        if container.status == "exited":
            raise AssertionError(f"container exited: {container.logs().decode()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in {timeout}s: {container.logs().decode()[-2000:]}")


def test_backend_image_serves_with_baked_in_version(backend: str, built: dict):
    assert httpx.get(f"{backend}/readyz").json()["schema_state"] == "current"
    assert httpx.get(f"{backend}/version").json() == {
        "version": built["version"],
        "git_commit": built["git_commit"],
        "schema_head": head_revision(),
    }
    assert httpx.get(f"{backend}/api/products", params={"limit": 5}).json()["total"] == 200


def test_frontend_image_serves_bundle_with_cache_headers_and_proxies_api(
    backend: str, built: dict, client: docker.DockerClient
):
    ref = next(i["ref"] for i in built["images"] if i["name"] == "frontend")
    port = free_port()
    env = {"LISTEN_PORT": str(port), "LISTEN_HOST": "127.0.0.1", "BACKEND_URL": backend}
    container = client.containers.run(ref, environment=env, network_mode="host", detach=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(f"{url}/nginx-health", container)
        index = httpx.get(f"{url}/", headers={"Accept-Encoding": "gzip"})
        assert index.status_code == 200 and index.headers["cache-control"] == "no-cache"
        asset = next(part.split('"')[0] for part in index.text.split('src="')[1:] if "/assets/" in part)
        js = httpx.get(f"{url}/{asset.lstrip('./')}", headers={"Accept-Encoding": "gzip"})
        assert js.status_code == 200
        assert "immutable" in js.headers["cache-control"] and js.headers["content-encoding"] == "gzip"
        assert httpx.get(f"{url}/assets/missing-0000.js").status_code == 404
        assert httpx.get(f"{url}/api/products", params={"limit": 1}).json()["total"] == 200
        assert httpx.get(f"{url}/cart").status_code == 200  # app shell for client routes
    finally:
        container.stop(timeout=10)
        container.remove()
