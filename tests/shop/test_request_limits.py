"""The API's request-body limit (413 with the error body, chunked or not) and its explicit CORS, against a
real `shop-serve`: one configured with a small limit and an allowed origin, and the default one (none)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from shop.main import CORS_HEADERS, CORS_METHODS
from shop.settings import SettingsError, load_settings
from shop_ops.services.processes import RedisServer
from tests.support import ShopServer, shop_env

pytestmark = pytest.mark.services

LIMIT = 4096
ALLOWED = "https://shop.example"


@pytest.fixture(scope="module")
def limited(shop_db: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    env = shop_env(
        shop_db,
        redis_server.url(0),
        SHOP_MAX_REQUEST_BYTES=str(LIMIT),
        SHOP_CORS_ORIGINS=f"{ALLOWED}, http://x.test:8080",
    )
    srv = ShopServer(env, tmp_path_factory.mktemp("limited") / "shop.log")
    srv.start()
    yield srv.url
    srv.stop()


def cart_item_body(padding: int, product_id: int = 1) -> bytes:
    """A valid add-to-cart body, `padding` bytes of spaces longer (JSON allows them)."""
    return json.dumps({"product_id": product_id, "quantity": 1}).encode() + b" " * padding


def chunked(body: bytes, size: int = 1000) -> Iterator[bytes]:
    """The body as a generator: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


def assert_too_large(res: httpx.Response, limit: int) -> None:
    assert res.status_code == 413, res.text
    error = res.json()["error"]
    assert error["code"] == "request_too_large" and str(limit) in error["message"]
    assert error["request_id"] == res.headers["x-request-id"]


def test_body_over_the_limit_is_413_with_or_without_content_length(limited: str):
    with httpx.Client(base_url=limited, timeout=10) as client:
        cart = client.post("/api/carts").json()["id"]
        path = f"/api/carts/{cart}/items"
        assert_too_large(client.post(path, content=cart_item_body(LIMIT)), LIMIT)
        sent = client.post(path, content=chunked(cart_item_body(LIMIT)), headers={"Content-Type": "application/json"})
        assert "content-length" not in sent.request.headers  # really chunked
        assert_too_large(sent, LIMIT)
        # Nothing of a refused body reached the cart; a chunked body within the limit is read whole.
        assert client.get(f"/api/carts/{cart}").json()["item_count"] == 0
        # A product in stock (other tests share the catalog and sell from it).
        in_stock = next(
            p["id"] for p in client.get("/api/products", params={"limit": 100}).json()["items"] if p["stock"]
        )
        body = cart_item_body(LIMIT - 100, in_stock)
        ok = client.post(path, content=chunked(body), headers={"Content-Type": "application/json"})
        assert ok.status_code in (200, 201), ok.text
        assert client.get(f"/api/carts/{cart}").json()["item_count"] == 1


def test_default_limit_is_one_mebibyte(client: httpx.Client):
    cart = client.post("/api/carts").json()["id"]
    assert_too_large(client.post(f"/api/carts/{cart}/items", content=cart_item_body(1_048_576)), 1_048_576)


def test_allowed_origin_gets_explicit_cors_answers(limited: str):
    with httpx.Client(base_url=limited, timeout=10) as client:
        preflight = client.options(
            "/api/checkout",
            headers={
                "Origin": ALLOWED,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type, idempotency-key",
            },
        )
        simple = client.get("/api/categories", headers={"Origin": ALLOWED})
        other = client.options(
            "/api/checkout", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        other_get = client.get("/api/categories", headers={"Origin": "https://evil.example"})
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == ALLOWED
    assert preflight.headers["access-control-allow-methods"] == ", ".join(CORS_METHODS)  # never a wildcard
    allowed_headers = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {h.lower() for h in CORS_HEADERS} <= allowed_headers and "*" not in allowed_headers
    assert "access-control-allow-credentials" not in preflight.headers
    assert simple.status_code == 200 and simple.headers["access-control-allow-origin"] == ALLOWED
    assert "x-request-id" in simple.headers["access-control-expose-headers"].lower()
    # Another origin gets nothing a browser would accept.
    assert "access-control-allow-origin" not in other.headers and other.status_code == 400
    assert "access-control-allow-origin" not in other_get.headers


def test_no_cors_headers_by_default(client: httpx.Client):
    preflight = client.options("/api/checkout", headers={"Origin": ALLOWED, "Access-Control-Request-Method": "POST"})
    simple = client.get("/api/categories", headers={"Origin": ALLOWED})
    assert preflight.status_code == 405 and preflight.json()["error"]["code"] == "method_not_allowed"
    assert not [h for h in (*preflight.headers, *simple.headers) if h.startswith("access-control-")]


@pytest.mark.parametrize("origins", ["*", "https://shop.example/", "https://shop.example/app", "shop.example"])
def test_cors_origins_must_be_explicit_origins(origins: str):
    env = {"SHOP_DATABASE_URL": "postgresql://shop@127.0.0.1:5432/shop", "SHOP_REDIS_URL": "redis://127.0.0.1:6379/0"}
    with pytest.raises(SettingsError, match=r"SHOP_CORS_ORIGINS is invalid: .* is not an origin"):
        load_settings({**env, "SHOP_CORS_ORIGINS": origins})
    settings = load_settings({**env, "SHOP_CORS_ORIGINS": "https://a.example, http://127.0.0.1:5173"})
    assert settings.cors_origins == ("https://a.example", "http://127.0.0.1:5173")
