"""The running shop against its OpenAPI document (schemathesis), and text with NUL or invalid UTF-8 refused."""

from __future__ import annotations

import httpx
import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig

from tests.support import SEED_PRODUCTS, ShopServer

MAX_EXAMPLES = 40  # per operation, in the fuzzing phase; the whole run takes ~15 s on 2 cores


def schemathesis_config(cart_id: str) -> SchemathesisConfig:
    """Bounded, and no example database written into the work tree.

    The seed is fixed, but generation also adapts to the answers (request ids, cart contents), so
    two runs need not send the same requests.
    """
    return SchemathesisConfig.from_dict(
        {
            "seed": 20261127,
            "generation": {
                "max-examples": MAX_EXAMPLES,
                "database": "none",
                # NUL in text is refused by design (422, tested explicitly below) and JSON Schema
                # has no way to say so short of a regex on every text field: generating it would
                # make positive_data_acceptance report the refusal. Negative cases still get other
                # invalid text; the explicit tests below cover NUL and invalid UTF-8.
                "allow-x00": False,
            },
            # Half of the cart and product ids are ones that exist, so the generated requests also
            # reach real carts (lines, stock checks) and not only 404s. No operation reachable this
            # way changes the database: checkout's body cart id stays random (404), and the admin
            # route answers 401 to every generated Authorization header (documented).
            "dictionaries": {
                "carts": {"values": [cart_id]},
                "products": {"values": list(range(1, SEED_PRODUCTS + 1))},
            },
            "parameters": {
                "path.cart_id": {"dictionary": "carts", "probability": 0.5},
                "path.product_id": {"dictionary": "products", "probability": 0.5},
                "body.product_id": {"dictionary": "products", "probability": 0.5},
            },
            "operations": [
                {
                    # Adding to a real cart: a line past 1000 units (what is there + `quantity`) is
                    # refused with 422 invalid_quantity. That depends on the cart's state, which no
                    # request schema can express, so 422 counts as an answer to valid input here.
                    "include-name": "POST /api/carts/{cart_id}/items",
                    "checks": {
                        "positive_data_acceptance": {"expected-statuses": ["2xx", "404", "409", "422"]},
                    },
                },
            ],
        }
    )


@pytest.fixture(scope="session")
def api_schema(server: ShopServer):
    cart = httpx.post(f"{server.url}/api/carts").json()["id"]
    httpx.post(f"{server.url}/api/carts/{cart}/items", json={"product_id": 1, "quantity": 1}).raise_for_status()
    return schemathesis.openapi.from_url(f"{server.url}/api/openapi.json", config=schemathesis_config(cart))


schema = schemathesis.pytest.from_fixture("api_schema")


@pytest.mark.services
@pytest.mark.usefixtures("schemathesis_nodeid")
@schema.parametrize()
def test_every_operation_answers_as_documented(case):
    # All of schemathesis's checks: no 5xx; status code, content type, headers and body as
    # documented; schema-valid input accepted and invalid input refused; undeclared methods 405.
    case.call_and_validate()


def assert_refused(res: httpx.Response, where: str) -> None:
    assert res.status_code == 422, res.text
    error = res.json()["error"]
    assert error["code"] == "validation_error"
    assert error["message"].startswith(f"{where}: ")
    assert error["request_id"] == res.headers["x-request-id"]


@pytest.mark.services
@pytest.mark.parametrize("param", ["q", "category"])
@pytest.mark.parametrize(("raw", "why"), [("a%00b", "NUL"), ("a%FFb", "UTF-8"), ("%C3", "UTF-8")])
def test_search_text_with_nul_or_invalid_utf8_is_422(client: httpx.Client, param: str, raw: str, why: str):
    # Raw query strings: httpx would percent-encode a str, but %FF must reach the server as sent.
    res = client.get(f"/api/products?{param}={raw}")
    assert_refused(res, f"query.{param}")
    assert why in res.json()["error"]["message"]


@pytest.mark.services
def test_cart_id_with_nul_or_invalid_utf8_is_422(client: httpx.Client):
    assert_refused(client.get("/api/carts/ab%00cd"), "path.cart_id")
    assert_refused(client.get("/api/carts/ab%FFcd"), "path.cart_id")


@pytest.fixture
def cart_with_item(client: httpx.Client) -> str:
    cart = client.post("/api/carts").json()["id"]
    client.post(f"/api/carts/{cart}/items", json={"product_id": 2, "quantity": 1}).raise_for_status()
    return cart


@pytest.mark.services
def test_checkout_body_with_nul_is_422(client: httpx.Client, cart_with_item: str):
    res = client.post(
        "/api/checkout",
        json={"cart_id": cart_with_item, "email": "ada\u0000@example.com"},
        headers={"Idempotency-Key": f"nul-{cart_with_item}"},
    )
    assert_refused(res, "email")
    # Nothing was placed: the cart is still there to check out.
    assert client.get(f"/api/carts/{cart_with_item}").json()["item_count"] == 1


@pytest.mark.services
def test_admin_body_with_nul_is_422(client: httpx.Client, admin_token: str):
    before = client.get("/api/products/12").json()
    for field in ["name", "description", "category"]:
        res = client.patch(
            "/api/admin/products/12", json={field: "x\u0000y"}, headers={"Authorization": f"Bearer {admin_token}"}
        )
        assert_refused(res, field)
    assert client.get("/api/products/12").json() == before


@pytest.mark.services
def test_every_api_operation_documents_the_rate_limit_and_body_limit(client: httpx.Client):
    # The router's 429 (nginx limit_req, shop_ops/resources/rate_limit.py) and the backend's 413 carry the
    # ErrorBody; the 429 names its Retry-After header. Probes (/healthz, ...) are never limited.
    spec = client.get("/api/openapi.json").json()
    operations = [(p, m, op) for p, ops in spec["paths"].items() if p.startswith("/api/") for m, op in ops.items()]
    assert len(operations) >= 10
    for path, method, op in operations:
        for status in ("413", "429"):
            body = op["responses"][status]["content"]["application/json"]["schema"]
            assert body["$ref"].endswith("/ErrorBody"), (method, path, status)
        assert op["responses"]["429"]["headers"]["Retry-After"]["schema"]["type"] == "integer", (method, path)
    assert "429" not in spec["paths"]["/healthz"]["get"]["responses"]
