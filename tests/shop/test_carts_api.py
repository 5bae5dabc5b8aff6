"""Carts in Redis: create, add, change, remove, stock and quantity validation."""

from __future__ import annotations

import httpx
import pytest


def new_cart(client: httpx.Client) -> str:
    res = client.post("/api/carts")
    assert res.status_code == 201
    return res.json()["id"]


def in_stock_product(client: httpx.Client, minimum: int = 5) -> dict:
    for item in client.get("/api/products", params={"limit": 100}).json()["items"]:
        if item["stock"] >= minimum:
            return item
    raise AssertionError("no product in stock")


def test_add_accumulates_and_totals(client: httpx.Client):
    cart_id = new_cart(client)
    product = in_stock_product(client)
    client.post(f"/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 1})
    cart = client.post(f"/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 2}).json()
    assert cart["items"] == [
        {
            "product_id": product["id"],
            "name": product["name"],
            "price_cents": product["price_cents"],
            "quantity": 3,
            "line_total_cents": 3 * product["price_cents"],
        }
    ]
    assert cart["total_cents"] == 3 * product["price_cents"]
    assert cart["item_count"] == 3
    assert client.get(f"/api/carts/{cart_id}").json() == cart


def test_patch_and_delete_items(client: httpx.Client):
    cart_id = new_cart(client)
    product = in_stock_product(client)
    client.post(f"/api/carts/{cart_id}/items", json={"product_id": product["id"]})
    cart = client.patch(f"/api/carts/{cart_id}/items/{product['id']}", json={"quantity": 4}).json()
    assert cart["items"][0]["quantity"] == 4
    cart = client.delete(f"/api/carts/{cart_id}/items/{product['id']}").json()
    assert cart["items"] == [] and cart["total_cents"] == 0
    again = client.delete(f"/api/carts/{cart_id}/items/{product['id']}")
    assert again.status_code == 404


def test_more_than_stock_is_refused(client: httpx.Client, admin_token: str):
    cart_id = new_cart(client)
    product = in_stock_product(client)
    # A known stock below the quantity limit (1000): load tests in the session restock every product to 1000.
    stocked = client.patch(
        f"/api/admin/products/{product['id']}", json={"stock": 7}, headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert stocked.status_code == 200, stocked.text
    res = client.post(f"/api/carts/{cart_id}/items", json={"product_id": product["id"], "quantity": 8})
    assert res.status_code == 409
    assert res.json()["error"]["code"] == "insufficient_stock"
    assert client.get(f"/api/carts/{cart_id}").json()["items"] == []


@pytest.mark.parametrize("body", [{"product_id": 1, "quantity": -1}, {"product_id": 1, "quantity": 0},
                                  {"product_id": -5}, {"product_id": 1, "quantity": 1001},
                                  {"product_id": 1, "colour": "red"}, {}])  # fmt: skip
def test_invalid_item_bodies_are_422(client: httpx.Client, body):
    res = client.post(f"/api/carts/{new_cart(client)}/items", json=body)
    assert res.status_code == 422
    assert res.json()["error"]["code"] == "validation_error"


def test_malformed_json_is_400(client: httpx.Client):
    res = client.post(
        f"/api/carts/{new_cart(client)}/items", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert res.status_code == 400
    assert res.json()["error"]["code"] == "malformed_json"


def test_unknown_cart_and_product(client: httpx.Client):
    assert client.get("/api/carts/" + "0" * 32).status_code == 404
    assert client.get("/api/carts/not-a-cart-id").status_code == 404
    res = client.post(f"/api/carts/{new_cart(client)}/items", json={"product_id": 987654})
    assert res.status_code == 404
    assert "987654" in res.json()["error"]["message"]
