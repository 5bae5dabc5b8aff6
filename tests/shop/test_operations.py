"""Operations endpoints: health, readiness by schema revision, version, metrics, logs, OpenAPI."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from shop.migrate import head_revision, upgrade
from shop_ops.services.processes import PostgresCluster, RedisServer
from tests.support import ShopServer, new_database, shop_env


@pytest.fixture
def start_server(redis_server: RedisServer, tmp_path: Path) -> Iterator:
    started: list[ShopServer] = []

    def start(db_url: str, redis_url: str | None = None, **env: str) -> ShopServer:
        srv = ShopServer(shop_env(db_url, redis_url or redis_server.url(1), **env), tmp_path / f"s{len(started)}.log")
        srv.start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def test_healthz_and_readyz(client: httpx.Client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "database": "ok", "redis": "ok", "db_revision": head_revision(),
                            "schema_state": "current", "code_revision": head_revision()}  # fmt: skip


def test_not_ready_while_schema_is_behind(postgres: PostgresCluster, start_server):
    url = new_database(postgres)
    upgrade(url, "0001")
    srv = start_server(url)
    res = httpx.get(f"{srv.url}/readyz")
    assert res.status_code == 503
    assert res.json()["schema_state"] == "behind" and res.json()["db_revision"] == "0001"
    assert httpx.get(f"{srv.url}/healthz").status_code == 200
    upgrade(url)
    assert httpx.get(f"{srv.url}/readyz").status_code == 200


def test_ready_when_a_later_release_migrated(postgres: PostgresCluster, start_server):
    url = new_database(postgres)
    upgrade(url)
    postgres.psql("UPDATE alembic_version SET version_num = '0099_from_the_future'", url.rsplit("/", 1)[1])
    res = httpx.get(f"{start_server(url).url}/readyz")
    assert res.status_code == 200
    assert res.json()["schema_state"] == "ahead"


def test_not_ready_without_redis(postgres: PostgresCluster, start_server, shop_db: str):
    from shop_ops.services.processes import free_port

    srv = start_server(shop_db, redis_url=f"redis://127.0.0.1:{free_port()}/0")
    res = httpx.get(f"{srv.url}/readyz")
    assert res.status_code == 503
    assert res.json()["redis"].startswith("error")


def test_version_is_the_baked_in_one(client: httpx.Client):
    assert client.get("/version").json() == {
        "version": "9.9.9",
        "git_commit": "unknown",
        "schema_head": head_revision(),
    }


def test_metrics_count_requests_by_route_and_cache(client: httpx.Client):
    client.get("/api/products/3")
    client.get("/api/products/3")
    client.get("/api/products/123456")
    text = client.get("/metrics").text
    assert 'shop_http_requests_total{method="GET",route="/api/products/{product_id}",status="200"}' in text
    assert 'route="/api/products/{product_id}",status="404"' in text
    assert 'shop_cache_requests_total{level="local",result="hit"}' in text
    assert "shop_db_pool_size" in text
    assert "shop_http_request_duration_seconds_bucket" in text


def test_one_json_log_line_per_request_with_request_id(client: httpx.Client, server: ShopServer):
    res = client.get("/api/products/5", headers={"X-Request-ID": "req-log-test-1"})
    assert res.headers["x-request-id"] == "req-log-test-1"
    mine: list[dict] = []
    for _ in range(50):  # the line is written just after the response goes out
        lines = [json.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
        mine = [line for line in lines if line.get("request_id") == "req-log-test-1"]
        if mine:
            break
        time.sleep(0.05)
    assert len(mine) == 1
    assert mine[0]["route"] == "/api/products/{product_id}" and mine[0]["status"] == 200
    assert isinstance(mine[0]["ms"], float)


def test_secrets_never_reach_the_log(postgres: PostgresCluster, start_server, shop_db: str, tmp_path: Path):
    secret = "pw-do-not-log-7f3a"
    srv = start_server(shop_db, SHOP_DATABASE_PASSWORD=secret, SHOP_ADMIN_TOKEN="tok-do-not-log-91b2")
    httpx.get(f"{srv.url}/api/products/1")
    httpx.patch(f"{srv.url}/api/admin/products/1", json={"stock": 5}, headers={"Authorization": "Bearer wrong"})
    httpx.get(f"{srv.url}/readyz")
    log = srv.log_path.read_text()
    assert "request" in log
    assert secret not in log and "tok-do-not-log-91b2" not in log


def test_openapi_documents_examples_and_error_body(client: httpx.Client):
    spec = client.get("/api/openapi.json").json()
    paths = spec["paths"]
    for path in ["/api/products", "/api/products/{product_id}", "/api/carts", "/api/carts/{cart_id}/items",
                 "/api/carts/{cart_id}/items/{product_id}", "/api/checkout", "/api/orders/{order_id}",
                 "/healthz", "/readyz", "/version", "/metrics"]:  # fmt: skip
        assert path in paths, path
    checkout = paths["/api/checkout"]["post"]
    assert {"201", "400", "404", "409", "422"} <= set(checkout["responses"])
    assert checkout["responses"]["409"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")
    schemas = spec["components"]["schemas"]
    for name in ["Product", "Cart", "Order", "CheckoutRequest", "AddItem"]:
        assert schemas[name].get("examples"), name
    assert client.get("/api/docs").status_code == 200
    assert client.get("/api/redoc").status_code == 200
    # The old paths on the backend's own port lead to the new ones.
    assert client.get("/openapi.json", follow_redirects=True).json()["paths"] == paths
