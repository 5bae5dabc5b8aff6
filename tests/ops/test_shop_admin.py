"""ShopAdmin against the real shop: restock and purge answer counts; wrong token, closed port and refusals explained."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shop_ops.resources.shop_admin import ShopAdmin, ShopAdminError, ShopAdminResource
from shop_ops.services.processes import PostgresCluster, free_port
from tests.support import ShopServer


def db_name(url: str) -> str:
    return url.rsplit("/", 1)[1]


def place_synthetic_order(server: ShopServer) -> int:
    """One order as k6 places it (cart, item, checkout with X-Synthetic); its id."""
    with httpx.Client(base_url=server.url, timeout=10) as http:
        cart = http.post("/api/carts").json()["id"]
        product = next(p for p in http.get("/api/products", params={"limit": 100}).json()["items"] if p["stock"] > 0)
        http.post(f"/api/carts/{cart}/items", json={"product_id": product["id"]}).raise_for_status()
        res = http.post(
            "/api/checkout",
            json={"cart_id": cart, "email": "k6@example.com"},
            headers={"Idempotency-Key": f"shop-admin-{uuid.uuid4()}", "X-Synthetic": "1"},
        )
        assert res.status_code == 201, res.text
        return res.json()["id"]


def test_restock_answers_how_many_changed(
    server: ShopServer, admin_token: str, postgres: PostgresCluster, shop_db: str
):
    db = db_name(shop_db)
    postgres.psql("UPDATE products SET stock = 0 WHERE id = 31", db)
    low = int(postgres.psql("SELECT count(*) FROM products WHERE stock < 10", db))
    admin = ShopAdmin(server.url, admin_token)
    assert admin.restock(10) == low >= 1
    assert postgres.psql("SELECT stock FROM products WHERE id = 31", db) == "10"
    assert admin.restock(10) == 0


def test_purge_answers_how_many_were_deleted(
    server: ShopServer, admin_token: str, postgres: PostgresCluster, shop_db: str
):
    order = place_synthetic_order(server)
    synthetic = int(postgres.psql("SELECT count(*) FROM orders WHERE synthetic", db_name(shop_db)))
    admin = ShopAdmin(f"{server.url}/", admin_token, timeout=10)
    assert admin.purge_synthetic_orders(3600) == 0  # placed just now
    assert admin.purge_synthetic_orders(0) == synthetic >= 1
    assert httpx.get(f"{server.url}/api/orders/{order}").status_code == 404
    assert admin.purge_synthetic_orders(0) == 0


def test_wrong_token_is_explained_without_showing_it(server: ShopServer):
    admin = ShopAdmin(server.url, "wrong-token-7c1d")
    with pytest.raises(ShopAdminError) as caught:
        admin.restock(10)
    message = str(caught.value)
    assert message.startswith(f"the shop at {server.url} refused the admin token: check the environment's admin token")
    assert "wrong-token-7c1d" not in message
    assert "wrong-token-7c1d" not in repr(admin) and server.url in repr(admin)


def test_closed_port_asks_whether_the_environment_is_up(admin_token: str):
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ShopAdminError, match=r"does not answer: is the environment up\?") as caught:
        ShopAdmin(url, admin_token, timeout=5).purge_synthetic_orders(0)
    assert url in str(caught.value) and admin_token not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_refused_input_names_the_status_and_the_answer(server: ShopServer, admin_token: str):
    with pytest.raises(ShopAdminError, match=r"answered /api/admin/restock with HTTP 422: .*min_stock"):
        ShopAdmin(server.url, admin_token).restock(0)


def test_an_empty_token_is_refused_up_front():
    with pytest.raises(ShopAdminError, match="admin token file is empty"):
        ShopAdmin("http://127.0.0.1:1", " \n")


def test_order_statistics_exclude_synthetic_orders(
    server: ShopServer, admin_token: str, postgres: PostgresCluster, shop_db: str
):
    # A window of its own in the past (May 2002): one synthetic order placed and moved there.
    order = place_synthetic_order(server)
    postgres.psql(f"UPDATE orders SET created_at = '2002-05-10 00:00:00+00' WHERE id = {order}", db_name(shop_db))
    since, until = datetime(2002, 5, 1, tzinfo=UTC), datetime(2002, 6, 1, tzinfo=UTC)
    stats = ShopAdmin(server.url, admin_token).order_statistics(since, until)
    assert (stats.orders, stats.revenue_cents, stats.synthetic_orders) == (0, 0, 1)
    assert (stats.since, stats.until) == (since, until)


def test_the_resource_reads_each_environments_token_file(server: ShopServer, admin_token: str, tmp_path: Path):
    token_file = tmp_path / "staging-admin-token"
    token_file.write_text(admin_token + "\n")
    resource = ShopAdminResource(token_files={"staging": str(token_file), "production": ""})
    assert resource.client("staging", server.url).restock(1) == 0
    with pytest.raises(ShopAdminError, match="SHOP_OPS_PRODUCTION_ADMIN_TOKEN_FILE"):
        resource.client("production", server.url)
    token_file.unlink()
    with pytest.raises(ShopAdminError, match=r"cannot read staging's admin token file .*No such file"):
        resource.client("staging", server.url)
