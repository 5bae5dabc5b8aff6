"""`shop-ops local up | status | down` end to end, on free ports under a temp state folder, with a real release:
the build pushed as a new version, started by the stack's own push sensor, serving staging and restarted after down/up.

The Docker API and image storage are the repository's (`SHOP_OPS_DOCKER_STATE`, the `docker_api`
fixture): images built once are reused, instead of re-importing the base images and rebuilding
both images in every temp folder. Everything else (clusters, Redis, registry, routers, dagster
dev, app containers labelled with this stack) belongs to the temp state and must be gone after `down`.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from shop_ops.localstack import apps
from shop_ops.localstack.docker_api import DockerApi
from shop_ops.localstack.processes import free_port, pg_bin, pids_using
from shop_ops.localstack.stack import stack_id
from shop_ops.localstack.version_push import build_version_layers, push_release
from shop_ops.release.ledger import ReleaseLedger
from shop_ops.resources.containers import DockerEngine
from shop_ops.resources.registry import RegistryClient
from shop_ops.settings import ImageSettings

SHOP_OPS = str(Path(sys.executable).parent / "shop-ops")
SERVICES = ("postgres", "redis", "registry", "docker_api", "staging", "production", "dagster")


def _free_ports(count: int) -> list[int]:
    ports: set[int] = set()
    while len(ports) < count:
        ports.add(free_port())
    return sorted(ports)


@pytest.fixture
def local_env(docker_api: DockerApi) -> Iterator[dict[str, str]]:
    """Environment variables for a private stack: its own YAML config (free ports) and state folder."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-stack-"))
    base.chmod(0o755)  # as root, PostgreSQL runs as the postgres OS user and must traverse it
    p = iter(_free_ports(17))
    config = {
        "profile": "local",
        "dagster": {"port": next(p)},
        "registry": {"port": next(p)},
        "redis": {"port": next(p)},
        "environments": {
            name: {
                "postgres_port": next(p),
                "redis_db": db,
                "router_port": next(p),
                "slots": {
                    "blue": {"backend_port": next(p), "frontend_port": next(p)},
                    "green": {"backend_port": next(p), "frontend_port": next(p)},
                },
            }
            for name, db in (("staging", 1), ("production", 2))
        },
    }
    (base / "local.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHOP_")}
    env.update(
        SHOP_OPS_CONFIG=str(base / "local.yaml"),
        SHOP_OPS_STATE=str(base / "state"),
        SHOP_OPS_DOCKER_STATE=str(docker_api.state_dir),
    )
    yield env
    shop_ops(env, "down", timeout=120)  # whatever a failed assertion left running
    shutil.rmtree(base, ignore_errors=True)


def shop_ops(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SHOP_OPS, "local", *args], env=env, capture_output=True, text=True, timeout=timeout)


def status(env: dict[str, str]) -> dict:
    result = shop_ops(env, "status", "--json", timeout=60)
    return json.loads(result.stdout)


def stack_leftovers(env: dict[str, str], engine: DockerEngine) -> tuple[list[int], list[str]]:
    """Processes holding files in the temp state, and containers (running or not) of this stack."""
    state = Path(env["SHOP_OPS_STATE"])
    pids = pids_using(state, "") if state.exists() else []
    containers = engine.list_services(labels={"io.shop-ops.stack": stack_id(state)}, include_stopped=True)
    return pids, [c.name for c in containers]


def test_up_status_down_up(local_env: dict[str, str], docker_api: DockerApi) -> None:
    env = local_env
    up = shop_ops(env, "up")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "no release record exists yet" in up.stdout
    assert "starting postgres (staging) on 127.0.0.1:" in up.stdout

    doc = status(env)
    assert set(SERVICES) <= set(doc), doc
    for service in SERVICES:
        assert doc[service]["up"] is True, (service, doc[service])
    assert doc["postgres"]["staging"]["dsn"].startswith("postgresql://shop@127.0.0.1:")
    assert Path(doc["registry"]["credentials_file"]).exists()
    secrets = [json.loads(Path(doc["registry"]["credentials_file"]).read_text())["password"]]
    secrets += [Path(doc["postgres"][name]["password_file"]).read_text().strip() for name in ("staging", "production")]
    assert not any(secret in json.dumps(doc) for secret in secrets)

    for name in ("staging", "production"):
        url = doc[name]["url"]
        home = httpx.get(f"{url}/", timeout=10)
        assert home.status_code == 200 and "<div id=" in home.text, home.text[:200]
        products = httpx.get(f"{url}/api/products", timeout=10)
        assert products.status_code == 200 and products.json()["items"], products.text[:200]
        assert home.headers["x-shop-slot"] == "blue"

        # The password file: readable by the containers' group 10001, nobody else; TCP needs it.
        pw = Path(doc["postgres"][name]["password_file"])
        mode = pw.stat()
        assert stat.S_IMODE(mode.st_mode) == 0o640 and mode.st_gid == 10001
        port = doc["postgres"][name]["dsn"].split(":")[2].split("/")[0]
        no_password = subprocess.run(
            [pg_bin("psql"), "-h", "127.0.0.1", "-p", port, "-U", "shop", "-d", "shop", "-w", "-c", "SELECT 1"],
            capture_output=True,
            text=True,
        )
        assert no_password.returncode != 0 and "password" in no_password.stderr
        assert Path(doc["postgres"][name]["wal_archive"]).is_dir()

    again = shop_ops(env, "up")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "starting" not in again.stdout and "already running" in again.stdout

    # A real release: the build pushed as 9.9.9 -> registry_push_sensor (in this stack's dagster dev)
    # -> one release_staging run -> staging serves 9.9.9, verified, recorded in the ledger.
    engine = DockerEngine(docker_api.docker_host)
    state = Path(env["SHOP_OPS_STATE"])
    registry = RegistryClient(doc["registry"]["url"], Path(doc["registry"]["credentials_file"]))
    images = ImageSettings()
    refs = build_version_layers("9.9.9", engine, registry, images)
    digests = push_release(engine, registry, refs)
    ledger = ReleaseLedger(state)
    deadline = time.monotonic() + 240
    while not [r for r in ledger.history("staging") if r["finished_at"] and r["version"] == "9.9.9"]:
        assert time.monotonic() < deadline, f"no finished release of 9.9.9 after 240 s; ledger: {ledger.history()}"
        time.sleep(1)
    time.sleep(6)  # one more sensor interval: a second request for the same push would show here
    [release] = [r for r in ledger.history("staging") if r["version"] == "9.9.9"]
    assert release["status"] == "verified", release
    assert (release["backend_digest"], release["frontend_digest"]) == (digests["backend"], digests["frontend"])
    release_id = release["release_id"]
    staging_url = doc["staging"]["url"]
    assert httpx.get(f"{staging_url}/version", timeout=10).json()["version"] == "9.9.9"
    for ref in refs.values():
        engine.remove_image(ref)
    # The release's run, as dagster dev stored it (event log, run storage, captured stdout/stderr):
    # none of the stack's secrets (database passwords, the registry's password).
    dagster_home = Path(doc["dagster"]["dagster_home"])
    stored = [f for f in dagster_home.rglob("*") if f.is_file()]
    assert any(f.suffix in (".out", ".err", ".complete") for f in stored), stored  # compute logs are there
    assert [f for f in stored if release_id.encode() in f.read_bytes()]  # and the run's own records
    for secret in secrets:
        leaks = [str(f) for f in stored if secret.encode() in f.read_bytes()]
        assert leaks == [], f"a secret is stored in {leaks}"

    down = shop_ops(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    doc = status(env)
    for service in SERVICES:
        if service != "docker_api":  # shared with the test session: not ours to stop
            assert doc[service]["up"] is False, (service, doc[service])
    engine = DockerEngine(docker_api.docker_host)
    assert stack_leftovers(env, engine) == ([], [])

    up2 = shop_ops(env, "up")
    assert up2.returncode == 0, up2.stdout + up2.stderr
    assert "seeding" not in up2.stdout  # the databases were kept
    assert f"staging: pulling release 9.9.9 ({release_id})" in up2.stdout
    assert "staging: migrating" not in up2.stdout and "production: migrating" in up2.stdout
    note = next(line for line in up2.stdout.splitlines() if line.startswith("note: "))
    assert f"staging serves release 9.9.9 ({release_id})" in note and "production serves the build" in note, note
    running = {c.name: c.image for c in apps.stack_containers(engine, stack_id(state)) if c.status == "running"}
    assert registry.pinned_ref("shop/backend", digests["backend"]) in running.values(), running
    assert httpx.get(f"{staging_url}/version", timeout=10).json()["version"] == "9.9.9"
    doc = status(env)
    assert all(doc[service]["up"] for service in SERVICES), doc


def test_port_held_by_another_process(local_env: dict[str, str], docker_api: DockerApi) -> None:
    config = yaml.safe_load(Path(local_env["SHOP_OPS_CONFIG"]).read_text())
    port = config["environments"]["production"]["router_port"]
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = shop_ops(local_env, "up")
    assert result.returncode != 0
    assert f"port {port} (router (production))" in result.stderr, result.stderr
    assert stack_leftovers(local_env, DockerEngine(docker_api.docker_host)) == ([], [])
