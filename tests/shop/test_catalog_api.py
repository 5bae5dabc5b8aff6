"""Catalog endpoints: search, pagination, product pages, cache invalidation, bad input."""

from __future__ import annotations

import httpx
import pytest

from tests.support import SEED_PRODUCTS


def test_search_matches_name_or_description(client: httpx.Client):
    body = client.get("/api/products", params={"q": "oak", "limit": 100}).json()
    assert body["total"] > 0
    for item in body["items"]:
        assert "oak" in (item["name"] + " " + item["description"]).lower()
    # "range" only occurs in descriptions
    assert client.get("/api/products", params={"q": "range", "limit": 1}).json()["total"] == SEED_PRODUCTS


def test_pagination_is_stable_and_complete(client: httpx.Client):
    seen = []
    for page in range(1, 5):
        body = client.get("/api/products", params={"category": "books", "page": page, "limit": 10}).json()
        assert body["page"] == page and body["limit"] == 10
        seen += [item["id"] for item in body["items"]]
        assert all(item["category"] == "books" for item in body["items"])
    assert seen == sorted(seen)
    assert len(seen) == len(set(seen)) == 30
    total = client.get("/api/products", params={"category": "books"}).json()["total"]
    assert total == SEED_PRODUCTS // 10


def test_page_past_the_end_is_empty_with_total(client: httpx.Client):
    body = client.get("/api/products", params={"page": 999, "limit": 100}).json()
    assert body["items"] == []
    assert body["total"] == SEED_PRODUCTS


def test_like_wildcards_match_literally(client: httpx.Client):
    assert client.get("/api/products", params={"q": "%"}).json()["total"] == 0
    assert client.get("/api/products", params={"q": "_"}).json()["total"] == 0


def test_product_page_and_unknown_id(client: httpx.Client):
    product = client.get("/api/products/7").json()
    assert product["id"] == 7 and product["sku"] == "SKU-000007"
    missing = client.get("/api/products/999999")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"
    assert "999999" in missing.json()["error"]["message"]
    assert missing.json()["error"]["request_id"] == missing.headers["x-request-id"]


def test_categories(client: httpx.Client):
    cats = client.get("/api/categories").json()
    assert "books" in cats and cats == sorted(cats)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"limit": 101}, 422, "invalid_limit"),
        ({"limit": 0}, 422, "invalid_limit"),
        ({"page": 0}, 422, "invalid_page"),
        ({"page": "two"}, 422, "validation_error"),
        ({"q": "x" * 101}, 422, "validation_error"),
    ],
)
def test_bad_listing_parameters(client: httpx.Client, params, status, code):
    res = client.get("/api/products", params=params)
    assert res.status_code == status
    assert res.json()["error"]["code"] == code


def test_non_numeric_product_id_is_422(client: httpx.Client):
    res = client.get("/api/products/abc")
    assert res.status_code == 422
    assert res.json()["error"]["code"] == "validation_error"


def test_unknown_route_has_error_body(client: httpx.Client):
    res = client.get("/api/nothing-here")
    assert res.status_code == 404
    assert res.json()["error"]["code"] == "not_found"


def test_product_change_invalidates_cached_pages(client: httpx.Client, admin_token: str):
    before = client.get("/api/products/11").json()
    listed = client.get("/api/products", params={"q": before["name"]}).json()
    assert listed["items"][0]["price_cents"] == before["price_cents"]
    new_price = before["price_cents"] + 1
    res = client.patch(
        "/api/admin/products/11",
        json={"price_cents": new_price, "name": before["name"] + " Renamed"},
        headers={"Authorization": f"Bearer {admin_token}"},
    )
    assert res.status_code == 200, res.text
    assert client.get("/api/products/11").json()["price_cents"] == new_price
    relisted = client.get("/api/products", params={"q": before["name"] + " Renamed"}).json()
    assert relisted["total"] == 1 and relisted["items"][0]["price_cents"] == new_price


def test_admin_change_needs_the_token(client: httpx.Client):
    res = client.patch("/api/admin/products/11", json={"stock": 1}, headers={"Authorization": "Bearer wrong"})
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "unauthorized"
    negative = client.patch("/api/admin/products/11", json={"stock": -1})
    assert negative.status_code == 422
