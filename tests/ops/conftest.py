"""Fixtures for the shop_ops code location: engines and clients over the real Docker API and registry, one images run, the run image."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import dagster as dg
import pytest
from aiosmtpd.controller import Controller

from shop_ops.assets.images import image_assets
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.release.images import BuiltImage, shop_image_specs
from shop_ops.resources.aws import AwsResource
from shop_ops.resources.containers import ContainersResource, DockerEngine
from shop_ops.resources.ledger import ReleaseLedger, dagster_postgres_url
from shop_ops.resources.registry import RegistryClient, RegistryResource
from shop_ops.services.processes import free_port, wait_for_http
from shop_ops.services.registry import RegistryServer
from tests.support import dagster_pg_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def runner_image(docker_api: DockerApi) -> str:
    """The run image, built once per source hash by deploy/build-runner-image.sh (cached across sessions).

    A cold build takes one to two minutes (wheels, the PostgreSQL .debs, podman build); up to date, about two seconds.
    """
    env = {**os.environ, **docker_api.podman_env()}
    result = subprocess.run(
        [str(ROOT / "deploy" / "build-runner-image.sh")], env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def engine(docker_api: DockerApi) -> Iterator[DockerEngine]:
    eng = DockerEngine(docker_api.docker_host)
    yield eng
    eng.close()


@pytest.fixture(scope="session")
def registry_client(registry: RegistryServer) -> RegistryClient:
    return RegistryClient(registry.url, registry.credentials_file)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.services)])
def ledger(request, tmp_path: Path) -> ReleaseLedger:
    """An empty release ledger: SQLite in a temp folder, or a fresh database of the test PostgreSQL.

    `postgres` is requested at run time (only for that parameter), so the collection hook cannot see
    it: the parameter carries the `services` marker itself.
    """
    if request.param == "sqlite":
        return ReleaseLedger(tmp_path)
    postgres = request.getfixturevalue("postgres")
    env = dagster_pg_env(postgres)
    return ReleaseLedger(dagster_postgres_url(env))


@pytest.fixture(scope="session")
def ops_resources(docker_api: DockerApi, registry: RegistryServer, tmp_path_factory) -> dict[str, object]:
    """The resources the assets need, pointed at the test services; values persist across runs (fs IO manager)."""
    return {
        "containers": ContainersResource(docker_host=docker_api.docker_host),
        "registry": RegistryResource(url=registry.url, credentials_file=str(registry.credentials_file)),
        "io_manager": dg.FilesystemIOManager(base_dir=str(tmp_path_factory.mktemp("io"))),
    }


@dataclass
class ImagesRun:
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    images: dict[str, BuiltImage]


@pytest.fixture(scope="session")
def images_run(ops_resources, engine, tmp_path_factory) -> Iterator[ImagesRun]:
    """The images group (both images, checks, release tags) materialized once, for real."""
    definitions = [d for spec in shop_image_specs() for d in image_assets(spec)]
    with dg.instance_for_test(temp_dir=str(tmp_path_factory.mktemp("dagster"))) as instance:
        result = dg.materialize(definitions, resources=ops_resources, instance=instance, raise_on_error=False)
        images = {name: result.output_for_node(f"{name}_image") for name in ("backend", "frontend") if result.success}
        yield ImagesRun(result=result, instance=instance, images=images)
    for image in images.values():  # the test registry's names; the images go with them
        engine.remove_image(image.ref)
        engine.remove_image(image.pinned_ref)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@dataclass
class MotoServer:
    """A running `moto_server` and its endpoint (fake AWS APIs: request shapes and state, no real resources)."""

    url: str
    pid: int


# moto reports this many running tasks for every ECS service it creates: a service with
# desiredCount <= this has a COMPLETED deployment, one with more stays IN_PROGRESS forever.
MOTO_ECS_RUNNING = 2
REGION = "eu-central-1"


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Iterator[MotoServer]:
    """`moto_server -H 127.0.0.1` on a free port for the session; dummy credentials only in its own env."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"MOTO_ECS_SERVICE_RUNNING": str(MOTO_ECS_RUNNING), "AWS_ACCESS_KEY_ID": "testing"})
    env.update({"AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "eu-central-1"})
    binary = str(Path(sys.executable).parent / "moto_server")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([binary, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/moto-api/data.json", 30, proc, log_path)
        yield MotoServer(url=url, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Calls:
    """ECS operations and their parameters, as the client sent them (botocore event hook)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, dict]] = []

    def record(self, params: dict, model, **_kwargs) -> None:
        self.items.append((model.name, copy.deepcopy(params)))

    def names(self) -> list[str]:
        return [name for name, _ in self.items]

    def params(self, name: str) -> list[dict]:
        return [p for n, p in self.items if n == name]


@pytest.fixture
def aws(moto_server, monkeypatch, tmp_path) -> AwsResource:
    """The resource pointed at moto; dummy credentials reach boto3 through the normal chain (env vars)."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    return AwsResource(region=REGION, endpoint_url=moto_server.url)


@pytest.fixture
def ecs(aws):
    return aws.ecs()


@pytest.fixture
def calls(ecs) -> Calls:
    recorder = Calls()
    ecs.meta.events.register("provide-client-params.ecs", recorder.record)
    return recorder


# --- real receivers for notifications: a Slack-style webhook (HTTP) and an SMTP server ---------------------
WEBHOOK_TOKEN = "T000/B000/secret-token"


class _Hook(BaseHTTPRequestHandler):
    received: list[dict] = []  # noqa: RUF012
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append(json.loads(body))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook() -> Iterator[type[_Hook]]:
    handler = type("Hook", (_Hook,), {"received": [], "status": 200})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/services/{WEBHOOK_TOKEN}"
    yield handler
    server.shutdown()
    server.server_close()


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(envelope.content.decode())
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[int, _Inbox]]:
    inbox, port = _Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()
