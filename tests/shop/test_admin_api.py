"""Admin bulk operations: restock to a minimum (caches follow), purge of old synthetic orders, token and input checks."""

from __future__ import annotations

import uuid

import httpx
import pytest
import redis

from shop.catalog import VERSION_KEY
from shop_ops.services.processes import PostgresCluster, RedisServer

from .test_carts_api import in_stock_product
from .test_checkout_api import db_name, filled_cart, set_stock

RESTOCK = "/api/admin/restock"
PURGE = "/api/admin/synthetic-orders/purge"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(res: httpx.Response, status: int, code: str) -> dict:
    """The documented ErrorBody, carrying the answer's request id."""
    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert set(error) == {"code", "message", "request_id"}
    assert error["code"] == code and error["message"]
    assert error["request_id"] == res.headers["x-request-id"]
    return error


def place_order(client: httpx.Client, synthetic: bool) -> dict:
    """A real order through the API: cart, one item, checkout (marked synthetic as k6 does)."""
    cart_id = filled_cart(client, in_stock_product(client)["id"])
    headers = {"Idempotency-Key": f"admin-test-{uuid.uuid4()}", **({"X-Synthetic": "1"} if synthetic else {})}
    res = client.post("/api/checkout", json={"cart_id": cart_id, "email": "ops@example.com"}, headers=headers)
    assert res.status_code == 201, res.text
    assert res.json()["synthetic"] is synthetic
    return res.json()


def backdate(postgres: PostgresCluster, shop_db: str, order_id: int, seconds: int) -> None:
    postgres.psql(
        f"UPDATE orders SET created_at = now() - make_interval(secs => {seconds}) WHERE id = {order_id}",
        db_name(shop_db),
    )


def count(postgres: PostgresCluster, shop_db: str, sql: str) -> int:
    return int(postgres.psql(sql, db_name(shop_db)))


@pytest.mark.parametrize(("path", "body"), [(RESTOCK, {"min_stock": 900}), (PURGE, {"older_than_seconds": 0})])
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "wrong"}])
def test_bulk_operations_need_the_token(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, path: str, body: dict, headers: dict
):
    low = "SELECT count(*) FROM products WHERE stock < 900"
    synthetic = "SELECT count(*) FROM orders WHERE synthetic"
    before = count(postgres, shop_db, low), count(postgres, shop_db, synthetic)
    assert_error(client.post(path, json=body, headers=headers), 401, "unauthorized")
    assert (count(postgres, shop_db, low), count(postgres, shop_db, synthetic)) == before


def test_restock_raises_low_stock_and_leaves_the_rest(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, admin_token: str, redis_server: RedisServer
):
    low, high = 21, 22
    set_stock(client, admin_token, low, 3)
    set_stock(client, admin_token, high, 400)
    assert client.get(f"/api/products/{low}").json()["stock"] == 3  # now cached
    below = count(postgres, shop_db, "SELECT count(*) FROM products WHERE stock < 50")
    assert below >= 1

    res = client.post(RESTOCK, json={"min_stock": 50}, headers=bearer(admin_token))
    assert res.status_code == 200, res.text
    assert res.json() == {"restocked": below, "min_stock": 50}
    assert count(postgres, shop_db, "SELECT min(stock) FROM products") == 50
    assert client.get(f"/api/products/{low}").json()["stock"] == 50  # its cached page was dropped
    assert client.get(f"/api/products/{high}").json()["stock"] == 400

    # Idempotent: nothing left to restock, and the search caches are left alone.
    versions = redis.Redis.from_url(redis_server.url(0))
    try:
        version = versions.get(VERSION_KEY)
        again = client.post(RESTOCK, json={"min_stock": 50}, headers=bearer(admin_token))
        assert again.status_code == 200 and again.json() == {"restocked": 0, "min_stock": 50}
        assert versions.get(VERSION_KEY) == version
    finally:
        versions.close()


def test_cached_search_page_shows_the_restocked_stock(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, admin_token: str
):
    product = client.get("/api/products/23").json()
    raised = product["stock"] + 1  # differs from what the cached page shows
    search = {"q": product["name"]}
    page = client.get("/api/products", params=search).json()
    assert page["items"][0]["stock"] == product["stock"]
    # Behind the cache's back (as a checkout's stock change is for search pages): the cached page does not move.
    postgres.psql(f"UPDATE products SET stock = 2 WHERE id = {product['id']}", db_name(shop_db))
    assert client.get("/api/products", params=search).json()["items"][0]["stock"] == product["stock"]

    res = client.post(RESTOCK, json={"min_stock": raised}, headers=bearer(admin_token))
    assert res.status_code == 200 and res.json()["restocked"] >= 1
    assert client.get("/api/products", params=search).json()["items"][0]["stock"] == raised
    assert client.get(f"/api/products/{product['id']}").json()["stock"] == raised


def test_purge_deletes_only_synthetic_orders_older_than_the_age(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, admin_token: str
):
    old_synthetic = place_order(client, synthetic=True)
    young_synthetic = place_order(client, synthetic=True)
    old_real = place_order(client, synthetic=False)
    backdate(postgres, shop_db, old_synthetic["id"], 7200)
    backdate(postgres, shop_db, old_real["id"], 7200)
    old_real = client.get(f"/api/orders/{old_real['id']}").json()  # as backdated
    older = "SELECT count(*) FROM orders WHERE synthetic AND created_at < now() - interval '1 hour'"
    expected = count(postgres, shop_db, older)

    res = client.post(PURGE, json={"older_than_seconds": 3600}, headers=bearer(admin_token))
    assert res.status_code == 200, res.text
    assert res.json() == {"deleted": expected}
    assert_error(client.get(f"/api/orders/{old_synthetic['id']}"), 404, "not_found")
    lines = f"SELECT count(*) FROM order_lines WHERE order_id = {old_synthetic['id']}"
    assert count(postgres, shop_db, lines) == 0
    assert client.get(f"/api/orders/{young_synthetic['id']}").json() == young_synthetic
    assert client.get(f"/api/orders/{old_real['id']}").json() == old_real

    # 0: every synthetic order placed so far; the real one stays, with its lines.
    synthetic = count(postgres, shop_db, "SELECT count(*) FROM orders WHERE synthetic")
    res = client.post(PURGE, json={"older_than_seconds": 0}, headers=bearer(admin_token))
    assert res.status_code == 200 and res.json() == {"deleted": synthetic}
    assert synthetic >= 1
    assert count(postgres, shop_db, "SELECT count(*) FROM orders WHERE synthetic") == 0
    assert_error(client.get(f"/api/orders/{young_synthetic['id']}"), 404, "not_found")
    assert client.get(f"/api/orders/{old_real['id']}").json() == old_real

    again = client.post(PURGE, json={"older_than_seconds": 0}, headers=bearer(admin_token))
    assert again.status_code == 200 and again.json() == {"deleted": 0}


def test_purge_goes_through_many_batches(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, admin_token: str
):
    """12,000 synthetic orders (24 batches) and 50 real ones, all created at the same instant (batch boundaries
    fall inside one creation time): every synthetic one goes, with its lines, and no real one."""
    db = db_name(shop_db)
    postgres.psql(
        """
        WITH placed AS (
            INSERT INTO orders (email, status, total_cents, synthetic, idempotency_key, cart_id, created_at)
            SELECT 'k6@example.com', 'placed', 100, n <= 12000, 'bulk-purge-' || n, 'cart', '2020-01-01T00:00:00Z'
            FROM generate_series(1, 12050) AS n
            RETURNING id
        )
        INSERT INTO order_lines (order_id, product_id, name, price_cents, quantity)
        SELECT id, 1, 'bulk', 100, 1 FROM placed
        """,
        db,
    )
    old_synthetic = "SELECT count(*) FROM orders WHERE synthetic AND created_at < now() - interval '1 day'"
    expected = count(postgres, shop_db, old_synthetic)
    assert expected >= 12000
    real = count(postgres, shop_db, "SELECT count(*) FROM orders WHERE NOT synthetic")

    res = client.post(PURGE, json={"older_than_seconds": 86400}, headers=bearer(admin_token))
    assert res.status_code == 200 and res.json() == {"deleted": expected}
    assert count(postgres, shop_db, old_synthetic) == 0
    assert count(postgres, shop_db, "SELECT count(*) FROM orders WHERE NOT synthetic") == real
    bulk_lines = "SELECT count(*) FROM order_lines WHERE name = 'bulk'"
    assert count(postgres, shop_db, bulk_lines) == 50  # the real orders' lines
    postgres.psql("DELETE FROM orders WHERE idempotency_key LIKE 'bulk-purge-%'", db)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (RESTOCK, {"min_stock": 0}, "min_stock"),
        (RESTOCK, {"min_stock": 1_000_001}, "min_stock"),
        (RESTOCK, {"min_stock": "many"}, "min_stock"),
        (RESTOCK, {"min_stock": 2.5}, "min_stock"),
        (RESTOCK, {}, "min_stock"),
        (RESTOCK, {"min_stock": 10, "max_stock": 20}, "max_stock"),
        (PURGE, {"older_than_seconds": -1}, "older_than_seconds"),
        (PURGE, {"older_than_seconds": 10**12}, "older_than_seconds"),
        (PURGE, {"older_than_seconds": None}, "older_than_seconds"),
        (PURGE, {}, "older_than_seconds"),
    ],
)
def test_bad_bodies_are_422(client: httpx.Client, admin_token: str, path: str, body: dict, field: str):
    error = assert_error(client.post(path, json=body, headers=bearer(admin_token)), 422, "validation_error")
    assert error["message"].startswith(f"{field}: ")


@pytest.mark.parametrize("path", [RESTOCK, PURGE])
def test_malformed_json_is_400(client: httpx.Client, admin_token: str, path: str):
    res = client.post(path, content=b"{not json", headers={**bearer(admin_token), "Content-Type": "application/json"})
    assert_error(res, 400, "malformed_json")


def test_openapi_documents_the_bulk_operations(client: httpx.Client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in (RESTOCK, PURGE):
        operation = paths[path]["post"]
        assert operation["summary"] and "Bearer" in operation["description"]
        # 503: database or Redis unavailable; 413 and 429: the body and rate limits every /api operation has.
        assert set(operation["responses"]) == {"200", "400", "401", "413", "422", "429", "503"}
        assert operation["responses"]["401"]["content"]["application/json"]["schema"]["$ref"].endswith("/ErrorBody")


STATISTICS = "/api/admin/statistics/orders"


def test_order_statistics_count_real_orders_in_the_window_and_keep_synthetic_apart(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str, admin_token: str
):
    # Orders moved into March 2001, a window no other test writes to: two real ones (one exactly at
    # the start, included), one synthetic, and a real one exactly at the end (excluded).
    placed = {
        "start": place_order(client, synthetic=False),
        "inside": place_order(client, synthetic=False),
        "synthetic": place_order(client, synthetic=True),
        "end": place_order(client, synthetic=False),
    }
    when = {"start": "2001-03-01 00:00:00+00", "inside": "2001-03-15 12:00:00+00", "synthetic": "2001-03-20 00:00:00+00",
            "end": "2001-04-01 00:00:00+00"}  # fmt: skip
    for name, order in placed.items():
        postgres.psql(f"UPDATE orders SET created_at = '{when[name]}' WHERE id = {order['id']}", db_name(shop_db))

    window = {"since": "2001-03-01T00:00:00Z", "until": "2001-04-01T00:00:00Z"}
    res = client.get(STATISTICS, params=window, headers=bearer(admin_token))
    assert res.status_code == 200, res.text
    assert res.json() == {
        "since": "2001-03-01T00:00:00+00:00",
        "until": "2001-04-01T00:00:00+00:00",
        "orders": 2,
        "revenue_cents": placed["start"]["total_cents"] + placed["inside"]["total_cents"],
        "synthetic_orders": 1,
    }
    # The same instant in another offset is the same window.
    shifted = {"since": "2001-03-01T01:00:00+01:00", "until": "2001-04-01T02:00:00+02:00"}
    assert client.get(STATISTICS, params=shifted, headers=bearer(admin_token)).json()["orders"] == 2


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"since": "2001-03-01T00:00:00", "until": "2001-04-01T00:00:00Z"}, "since needs a UTC offset"),
        ({"since": "2001-04-01T00:00:00Z", "until": "2001-04-01T00:00:00Z"}, "until must be after since"),
        ({"since": "2001-01-01T00:00:00Z", "until": "2003-01-01T00:00:00Z"}, "at most 366 days"),
        ({"since": "yesterday", "until": "2001-04-01T00:00:00Z"}, "since: "),
        ({"until": "2001-04-01T00:00:00Z"}, "since: "),
    ],
)
def test_order_statistics_refuse_a_bad_window(client: httpx.Client, admin_token: str, params: dict, message: str):
    error = assert_error(client.get(STATISTICS, params=params, headers=bearer(admin_token)), 422, "validation_error")
    assert message in error["message"]


def test_order_statistics_need_the_token(client: httpx.Client):
    window = {"since": "2001-03-01T00:00:00Z", "until": "2001-04-01T00:00:00Z"}
    assert_error(client.get(STATISTICS, params=window, headers={"Authorization": "Bearer wrong"}), 401, "unauthorized")
