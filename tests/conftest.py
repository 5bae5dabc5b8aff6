"""Fixtures that start the real services (PostgreSQL 15, Redis 7, the shop backend) on free ports."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shop.migrate import upgrade
from shop.seed import seed_catalog
from shop_ops.localenv.docker_api import DockerApi
from shop_ops.services.processes import PostgresCluster, RedisServer, free_port
from shop_ops.services.registry import RegistryServer
from tests.support import SEED_PRODUCTS, ShopServer, new_database, running_cluster, shop_env

ROOT = Path(__file__).resolve().parents[1]

# Fixtures that start a real program (here and in tests/ops/conftest.py). A test that uses one,
# directly or through other fixtures (client -> server -> shop_db -> postgres, ecs -> aws ->
# moto_server, engine -> docker_api, ...), gets the `services` marker; `make test-fast` leaves
# those out. The in-process receivers `webhook` and `smtp` (threads, no program) do not count.
SERVICE_FIXTURES = frozenset({"postgres", "redis_server", "docker_api", "registry", "server", "built", "moto_server"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    with running_cluster("shop-ops-test-pg-") as cluster:
        yield cluster


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(datadir=Path(tmp_path_factory.mktemp("redis")), port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def docker_api() -> Iterator[DockerApi]:
    """The Docker API over the repository's podman storage (base images are cached there).

    Started here unless it already runs (e.g. under `make run`); stopped only if started here.
    """
    api = DockerApi(Path(__file__).resolve().parents[1] / ".state")
    was_running = api.answers()
    api.start()
    yield api
    if not was_running:
        api.stop()


@pytest.fixture(scope="session")
def registry(docker_api: DockerApi) -> Iterator[RegistryServer]:
    """A real registry (htpasswd auth) on a free port; podman may push to it over plain HTTP."""
    server = RegistryServer(Path(tempfile.mkdtemp(prefix="shop-ops-test-registry-")), free_port())
    docker_api.allow_insecure_registry(server.address)
    server.start()
    yield server
    server.stop()
    shutil.rmtree(server.datadir, ignore_errors=True)


@pytest.fixture(scope="session")
def shop_db(postgres: PostgresCluster) -> str:
    url = new_database(postgres)
    upgrade(url)
    asyncio.run(seed_catalog(url, SEED_PRODUCTS))
    return url


@pytest.fixture
def schemathesis_nodeid(request: pytest.FixtureRequest) -> None:
    """For schemathesis tests (`usefixtures`): its 4.32.5 from_fixture reads `item._nodeid`, which pytest 9.2 no
    longer has (AttributeError before any request is made); it only names the per-operation reports with it."""
    request.node._nodeid = request.node.nodeid


@pytest.fixture(scope="session")
def admin_token() -> str:
    return "test-admin-token-not-a-secret"


@pytest.fixture(scope="session")
def payment_webhook_secret() -> str:
    """The `server`'s payment webhook signing secret (tests/shop/test_payments_webhook.py signs with it)."""
    return "test-webhook-secret-not-a-secret"


@pytest.fixture(scope="session")
def server(
    shop_db: str,
    redis_server: RedisServer,
    tmp_path_factory: pytest.TempPathFactory,
    admin_token: str,
    payment_webhook_secret: str,
) -> Iterator[ShopServer]:
    env = shop_env(
        shop_db, redis_server.url(0), SHOP_ADMIN_TOKEN=admin_token, SHOP_VERSION="9.9.9",
        SHOP_PAYMENT_WEBHOOK_SECRET=payment_webhook_secret,
    )  # fmt: skip
    srv = ShopServer(env, tmp_path_factory.mktemp("serve") / "shop.log")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def client(server: ShopServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def built(docker_api: DockerApi) -> dict:
    """scripts/build-images.sh, run for real once per session (tags <version>-<sha> and :local); its summary."""
    result = subprocess.run([str(ROOT / "scripts" / "build-images.sh")], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "size" in (result.stdout + result.stderr).lower()  # the table of measured sizes is printed
    return json.loads((ROOT / ".build" / "images.json").read_text())


@pytest.fixture
def root_only_checkout() -> Iterator[Path]:
    """`<tmp>/root-only/shop ops checkout`: where a newcomer may clone, inside a folder only its owner
    may enter (mode 700, as root's home on Debian) and with a space in its path. Services that run as
    their own users (PostgreSQL, nginx's workers) cannot pass the mode-700 folder; tests put state here
    to prove nothing needs them to."""
    base = Path(tempfile.mkdtemp(prefix="shop-ops-test-"))
    base.chmod(0o755)  # the one closed folder is root-only
    checkout = base / "root-only" / "shop ops checkout"
    checkout.mkdir(parents=True)
    (base / "root-only").chmod(0o700)
    yield checkout
    shutil.rmtree(base, ignore_errors=True)
