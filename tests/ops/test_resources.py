"""Resources against real services: the registry API (tags, digests, re-tag) and the Docker API (build, run, services)."""

from __future__ import annotations

import socket
import threading
import time

import httpx
import pytest

from shop_ops.resources.containers import ContainerError, RegistryAuth
from shop_ops.resources.registry import DOCKER_MANIFEST, RegistryClient, RegistryError
from shop_ops.services.processes import free_port
from tests.ops.conftest import write

TINY_DOCKERFILE = """\
ARG BASE_IMAGE
FROM ${BASE_IMAGE}
ARG GREETING=hello
LABEL org.example.greeting="${GREETING}"
USER 10001:10001
HEALTHCHECK --interval=30s CMD ["python3", "-c", "print(1)"]
CMD ["python3", "-c", "print('tiny')"]
"""


@pytest.fixture(scope="module")
def tiny_image(engine, tmp_path_factory) -> str:
    context = tmp_path_factory.mktemp("tiny")
    write(context / "Dockerfile", TINY_DOCKERFILE)
    ref = "localhost/shop-ops-test-tiny:1"
    result = engine.build(
        context, tag=ref, build_args={"BASE_IMAGE": "localhost/shop-base-python:bookworm", "GREETING": "hi"}
    )
    assert result.image_id and result.seconds > 0 and result.log
    yield ref
    engine.remove_image(ref)


@pytest.fixture(scope="module")
def pushed(engine, registry, registry_client, tiny_image) -> dict[str, str]:
    ref = registry_client.image_ref("test/tiny", "1.0.0-abc1234")
    engine.tag(tiny_image, ref)
    user, password = registry.credentials()
    digest = engine.push(ref, auth=RegistryAuth(user, password, registry.address), insecure=True)
    yield {"ref": ref, "digest": digest}
    engine.remove_image(ref)


def test_build_inspect_reports_user_healthcheck_labels(engine, tiny_image):
    facts = engine.inspect(tiny_image)
    assert facts.user == "10001:10001" and not facts.runs_as_root
    assert facts.healthcheck is True
    assert facts.labels["org.example.greeting"] == "hi"
    assert facts.layers >= 1 and 50 < facts.size_mb < 500


def test_failed_build_raises_with_log(engine, tmp_path):
    write(tmp_path / "Dockerfile", "ARG BASE_IMAGE\nFROM ${BASE_IMAGE}\nRUN exit 3\n")
    with pytest.raises(ContainerError, match="build of localhost/shop-ops-test-broken:1"):
        engine.build(tmp_path, tag="localhost/shop-ops-test-broken:1",
                     build_args={"BASE_IMAGE": "localhost/shop-base-python:bookworm"})  # fmt: skip


def test_registry_tags_digests_and_retag(registry_client, pushed):
    assert "test/tiny" in registry_client.catalog()
    assert registry_client.tags("test/tiny") == ["1.0.0-abc1234"]
    assert registry_client.tags("test/absent") == []
    digest = registry_client.manifest_digest("test/tiny", "1.0.0-abc1234")
    assert digest == pushed["digest"]
    manifest = registry_client.manifest("test/tiny", digest)
    assert manifest is not None and manifest.media_type == DOCKER_MANIFEST
    assert registry_client.manifest_digest("test/tiny", "9.9.9") is None

    assert registry_client.add_tag("test/tiny", digest, "1.0.0") == digest
    assert registry_client.tags("test/tiny") == ["1.0.0", "1.0.0-abc1234"]
    assert registry_client.manifest_digest("test/tiny", "1.0.0") == digest
    config = registry_client.image_config("test/tiny", "1.0.0")
    assert config["config"]["User"] == "10001:10001"
    with pytest.raises(RegistryError, match="no such manifest"):
        registry_client.add_tag("test/tiny", "0.0.1", "0.0.2")


def test_registry_wrong_credentials_are_refused_without_echo(registry, tmp_path, pushed):
    bad = write(tmp_path / "bad.json", '{"username": "shop-ops", "password": "not-the-password-xyz"}')
    client = RegistryClient(registry.url, bad)
    with pytest.raises(RegistryError, match="unauthorized") as err:
        client.tags("test/tiny")
    assert "not-the-password-xyz" not in str(err.value)
    with pytest.raises(RegistryError, match="must be JSON with username and password"):
        RegistryClient(registry.url, write(tmp_path / "broken.json", "secret-ish")).tags("test/tiny")


def test_run_once_uses_host_network_and_read_only_mounts(engine, tiny_image, tmp_path):
    # A listener on the host's loopback: only a host-network container can reach it.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].sendall(b"from-host"), daemon=True).start()
    secret = write(tmp_path / "token.txt", "mounted-value")
    code = (
        "import socket, pathlib; s = socket.create_connection(('127.0.0.1', int(__import__('os').environ['PORT'])));"
        "print(s.recv(20).decode(), pathlib.Path('/run/token').read_text());"
        "open('/run/token', 'w')"
    )
    result = engine.run_once(
        tiny_image, ["python3", "-c", code], env={"PORT": str(port)}, mounts={secret: "/run/token"}
    )
    server.close()
    assert "from-host mounted-value" in result.stdout
    assert result.exit_code != 0 and "Read-only file system" in result.logs  # the mount is read-only
    assert engine.list_services({"io.shop-ops.role": "one-off"}, include_stopped=True) == []  # removed


def test_run_once_timeout_kills_and_removes(engine, tiny_image):
    with pytest.raises(ContainerError, match="did not finish in 2 s"):
        engine.run_once(tiny_image, ["python3", "-c", "import time; time.sleep(60)"], timeout=2)
    assert engine.list_services({"io.shop-ops.role": "one-off"}, include_stopped=True) == []


def test_service_start_list_stop(engine, tiny_image):
    port = free_port()
    name = f"shop-ops-test-web-{port}"
    labels = {"io.shop-ops.test": name}
    service = engine.start_service(
        name, tiny_image, command=["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        labels=labels, env={"X": "1"}, stop_timeout=2,
    )  # fmt: skip
    try:
        assert service.name == name and service.labels["io.shop-ops.test"] == name
        deadline = time.monotonic() + 20
        while True:
            try:
                assert httpx.get(f"http://127.0.0.1:{port}/", timeout=1).status_code == 200
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, engine.logs(name)
                time.sleep(0.2)
        assert [s.name for s in engine.list_services(labels)] == [name]
    finally:
        assert engine.stop_service(name) is True
    assert engine.list_services(labels, include_stopped=True) == []
    assert engine.stop_service(name) is False
