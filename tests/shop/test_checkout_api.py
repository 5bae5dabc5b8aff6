"""Checkout: one order per Idempotency-Key, stock decremented in one transaction, no overselling."""

from __future__ import annotations

import asyncio
import concurrent.futures
import uuid

import httpx

from shop_ops.services.processes import PostgresCluster
from tests.support import ShopServer

from .test_carts_api import in_stock_product, new_cart


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def filled_cart(client: httpx.Client, product_id: int, quantity: int = 1) -> str:
    cart_id = new_cart(client)
    res = client.post(f"/api/carts/{cart_id}/items", json={"product_id": product_id, "quantity": quantity})
    assert res.status_code == 200, res.text
    return cart_id


def set_stock(client: httpx.Client, admin_token: str, product_id: int, stock: int) -> None:
    res = client.patch(
        f"/api/admin/products/{product_id}", json={"stock": stock}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert res.status_code == 200, res.text


def test_checkout_places_order_and_decrements_stock(client: httpx.Client, postgres: PostgresCluster, shop_db: str):
    product = in_stock_product(client, minimum=3)
    product["stock"] = int(postgres.psql(f"SELECT stock FROM products WHERE id = {product['id']}", db_name(shop_db)))
    cart_id = filled_cart(client, product["id"], 2)
    res = client.post(
        "/api/checkout", json={"cart_id": cart_id, "email": "ada@example.com"}, headers={"Idempotency-Key": "k-basic"}
    )
    assert res.status_code == 201, res.text
    order = res.json()
    assert order["number"] == f"SO-{order['id']:08d}"
    assert order["total_cents"] == 2 * product["price_cents"]
    assert order["items"] == [{"product_id": product["id"], "name": product["name"],
                               "price_cents": product["price_cents"], "quantity": 2}]  # fmt: skip
    assert order["synthetic"] is False
    stock = postgres.psql(f"SELECT stock FROM products WHERE id = {product['id']}", db_name(shop_db))
    assert int(stock) == product["stock"] - 2
    assert client.get(f"/api/products/{product['id']}").json()["stock"] == product["stock"] - 2
    assert client.get(f"/api/orders/{order['id']}").json() == order
    assert client.get(f"/api/carts/{cart_id}").status_code == 404


def test_same_key_twice_returns_the_first_order(client: httpx.Client, postgres: PostgresCluster, shop_db: str):
    cart_id = filled_cart(client, in_stock_product(client)["id"])
    body = {"cart_id": cart_id, "email": "bob@example.com"}
    first = client.post("/api/checkout", json=body, headers={"Idempotency-Key": "k-twice"})
    second = client.post("/api/checkout", json=body, headers={"Idempotency-Key": "k-twice"})
    assert first.status_code == 201 and second.status_code == 200
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    count = postgres.psql("SELECT count(*) FROM orders WHERE idempotency_key = 'k-twice'", db_name(shop_db))
    assert count == "1"


async def test_concurrent_retries_make_one_order(server: ShopServer, postgres: PostgresCluster, shop_db: str):
    with httpx.Client(base_url=server.url) as client:
        product = in_stock_product(client, minimum=2)
        cart_id = filled_cart(client, product["id"])
    stock_before = int(postgres.psql(f"SELECT stock FROM products WHERE id = {product['id']}", db_name(shop_db)))
    key = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as aclient:
        answers = await asyncio.gather(
            *(
                aclient.post("/api/checkout", json={"cart_id": cart_id, "email": "c@example.com"},
                             headers={"Idempotency-Key": key})
                for _ in range(12)
            )
        )  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200] * 11 + [201]
    assert len({a.json()["id"] for a in answers}) == 1
    rows = postgres.psql(f"SELECT count(*), sum(ol.quantity) FROM orders o JOIN order_lines ol ON ol.order_id = o.id "
                         f"WHERE o.idempotency_key = '{key}'", db_name(shop_db))  # fmt: skip
    assert rows == "1|1"
    stock = postgres.psql(f"SELECT stock FROM products WHERE id = {product['id']}", db_name(shop_db))
    assert int(stock) == stock_before - 1


async def test_last_item_is_never_oversold(
    server: ShopServer, postgres: PostgresCluster, shop_db: str, admin_token: str
):
    with httpx.Client(base_url=server.url) as client:
        product = in_stock_product(client, minimum=1)
        carts = [filled_cart(client, product["id"]) for _ in range(10)]
        set_stock(client, admin_token, product["id"], 1)
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as aclient:
        answers = await asyncio.gather(
            *(
                aclient.post("/api/checkout", json={"cart_id": cart, "email": "d@example.com"},
                             headers={"Idempotency-Key": str(uuid.uuid4())})
                for cart in carts
            )
        )  # fmt: skip
    codes = sorted(a.status_code for a in answers)
    assert codes == [201] + [409] * 9
    assert all(a.json()["error"]["code"] == "insufficient_stock" for a in answers if a.status_code == 409)
    db = db_name(shop_db)
    assert postgres.psql(f"SELECT stock FROM products WHERE id = {product['id']}", db) == "0"
    sold = postgres.psql(f"SELECT coalesce(sum(quantity), 0) FROM order_lines WHERE product_id = {product['id']}", db)
    assert sold == str(int(sold))  # a number
    orders_after = postgres.psql(
        f"SELECT count(*) FROM order_lines ol JOIN orders o ON o.id = ol.order_id WHERE ol.product_id = {product['id']} "
        f"AND o.cart_id IN ({', '.join(repr(c) for c in carts)})",
        db,
    )
    assert orders_after == "1"


def test_key_reused_for_another_cart_is_refused(client: httpx.Client):
    product_id = in_stock_product(client)["id"]
    first = client.post("/api/checkout", json={"cart_id": filled_cart(client, product_id), "email": "e@example.com"},
                        headers={"Idempotency-Key": "k-reuse"})  # fmt: skip
    assert first.status_code == 201
    other = client.post("/api/checkout", json={"cart_id": filled_cart(client, product_id), "email": "e@example.com"},
                        headers={"Idempotency-Key": "k-reuse"})  # fmt: skip
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_key_reused"


def test_checkout_input_errors(client: httpx.Client):
    empty = new_cart(client)
    no_key = client.post("/api/checkout", json={"cart_id": empty, "email": "f@example.com"})
    assert no_key.status_code == 400 and no_key.json()["error"]["code"] == "missing_idempotency_key"
    res = client.post(
        "/api/checkout", json={"cart_id": empty, "email": "f@example.com"}, headers={"Idempotency-Key": "k-e"}
    )
    assert res.status_code == 422 and res.json()["error"]["code"] == "empty_cart"
    res = client.post("/api/checkout", json={"cart_id": "f" * 32, "email": "f@example.com"},
                      headers={"Idempotency-Key": "k-unknown"})  # fmt: skip
    assert res.status_code == 404
    res = client.post(
        "/api/checkout", json={"cart_id": empty, "email": "not-an-email"}, headers={"Idempotency-Key": "k"}
    )
    assert res.status_code == 422 and "email" in res.json()["error"]["message"]
    res = client.post("/api/checkout", json={"cart_id": empty, "email": "f@example.com"},
                      headers={"Idempotency-Key": "x" * 201})  # fmt: skip
    assert res.status_code == 400 and res.json()["error"]["code"] == "invalid_idempotency_key"


def test_synthetic_orders_are_flagged(client: httpx.Client, postgres: PostgresCluster, shop_db: str):
    cart_id = filled_cart(client, in_stock_product(client)["id"])
    res = client.post("/api/checkout", json={"cart_id": cart_id, "email": "k6@example.com"},
                      headers={"Idempotency-Key": "k-synthetic", "X-Synthetic": "1"})  # fmt: skip
    assert res.status_code == 201 and res.json()["synthetic"] is True
    flag = postgres.psql("SELECT synthetic FROM orders WHERE idempotency_key = 'k-synthetic'", db_name(shop_db))
    assert flag == "t"


def test_unknown_order_is_404(client: httpx.Client):
    res = client.get("/api/orders/424242")
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"


def test_product_gone_from_the_catalog_fails_whole(client: httpx.Client, postgres: PostgresCluster, shop_db: str):
    db = db_name(shop_db)
    kept, gone = [int(i) for i in postgres.psql(
        "SELECT id FROM products p WHERE stock >= 5 AND NOT EXISTS "
        "(SELECT 1 FROM order_lines ol WHERE ol.product_id = p.id) ORDER BY id DESC LIMIT 2", db
    ).split()]  # fmt: skip
    cart_id = filled_cart(client, kept)
    client.post(f"/api/carts/{cart_id}/items", json={"product_id": gone, "quantity": 1})
    kept_stock = postgres.psql(f"SELECT stock FROM products WHERE id = {kept}", db)
    postgres.psql(f"DELETE FROM products WHERE id = {gone}", db)
    res = client.post("/api/checkout", json={"cart_id": cart_id, "email": "g@example.com"},
                      headers={"Idempotency-Key": "k-gone"})  # fmt: skip
    assert res.status_code == 409 and res.json()["error"]["code"] == "product_unavailable"
    assert postgres.psql(f"SELECT stock FROM products WHERE id = {kept}", db) == kept_stock
    assert postgres.psql("SELECT count(*) FROM orders WHERE idempotency_key = 'k-gone'", db) == "0"


def test_order_lookups_recover_when_the_database_drops_the_connections(
    client: httpx.Client, postgres: PostgresCluster, shop_db: str
):
    """The order lookup runs on asyncpg directly (db.fetchrow): a lost connection is dropped from the pool,
    so after PostgreSQL terminates every connection of the shop, at most the requests that held one fail.
    A full pool, killed a few times: a termination that lands mid-statement (asyncpg's InternalClientError)
    once failed the same connection twice (1 round in 6)."""
    cart_id = filled_cart(client, in_stock_product(client)["id"])
    order = client.post(
        "/api/checkout", json={"cart_id": cart_id, "email": "eve@example.com"}, headers={"Idempotency-Key": "k-lost"}
    ).json()
    url = client.base_url.join(f"/api/orders/{order['id']}")
    for _ in range(6):
        with concurrent.futures.ThreadPoolExecutor(16) as pool:  # every pooled connection in use at once
            assert set(pool.map(lambda _: httpx.get(url).status_code, range(48))) == {200}
        killed = postgres.psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{db_name(shop_db)}' AND pid <> pg_backend_pid()"
        )
        assert int(killed) >= 1
        statuses = [client.get(f"/api/orders/{order['id']}").status_code for _ in range(30)]
        # A request on a terminated connection answers 503 naming the database (shop/dependencies.py).
        assert set(statuses) <= {200, 503} and statuses[-10:] == [200] * 10, statuses
        assert statuses.count(503) <= int(killed), statuses
