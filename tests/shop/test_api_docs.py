"""The API's documentation routes in process: the document (servers, security, description), the pages and their assets.

No service is needed: the app is assembled and asked, never started (its lifespan would open PostgreSQL
and Redis; the document and the pages do not use them). Through a real router: tests/ops/test_bluegreen.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from shop.errors import ERROR_CODES
from shop.main import create_app
from shop.openapi import DOCS_PATH, OPENAPI_PATH, REDOC_PATH, SECURITY_SCHEME
from shop.settings import Settings

APP = Path(__file__).resolve().parents[2] / "app" / "shop"


@pytest.fixture(scope="module")
def docs() -> TestClient:
    settings = Settings(
        database_url="postgresql+asyncpg://docs@127.0.0.1/docs", redis_url="redis://127.0.0.1",
        version="7.3.1", max_request_bytes=2048, env="dev",
    )  # fmt: skip
    return TestClient(create_app(settings), base_url="http://backend.internal:8000")


def test_document_is_at_api_openapi_json_with_the_app_version(docs: TestClient):
    res = docs.get(OPENAPI_PATH)
    assert res.status_code == 200 and res.headers["content-type"] == "application/json"
    spec = res.json()
    assert spec["openapi"].startswith("3.") and spec["info"]["version"] == "7.3.1"
    # The document and its pages are not operations of the document.
    assert not [p for p in spec["paths"] if p in (OPENAPI_PATH, DOCS_PATH, REDOC_PATH) or "/docs/" in p]
    assert "2048 bytes" in spec["info"]["description"]


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, "http://backend.internal:8000"),
        ({"host": "staging.shop.test:8441", "x-forwarded-proto": "https"}, "https://staging.shop.test:8441"),
        ({"host": "127.0.0.1:8081", "x-forwarded-proto": "http"}, "http://127.0.0.1:8081"),
        ({"host": "shop.example", "x-forwarded-proto": "https, http"}, "https://shop.example"),  # the first proxy's
        ({"host": "shop.example", "x-forwarded-proto": "gopher"}, "http://shop.example"),
        ({"host": "evil.example/<script>"}, "/"),  # not a host: the document's own origin
    ],
)
def test_server_is_the_url_the_document_was_read_through(docs: TestClient, headers: dict, expected: str):
    spec = docs.get(OPENAPI_PATH, headers=headers).json()
    assert [s["url"] for s in spec["servers"]] == [expected]


def test_admin_operations_need_the_bearer_scheme_and_nothing_else_does(docs: TestClient):
    spec = docs.get(OPENAPI_PATH).json()
    assert spec["components"]["securitySchemes"][SECURITY_SCHEME] | {"description": ""} == {
        "type": "http", "scheme": "bearer", "description": "",
    }  # fmt: skip
    secured = {(path, method) for path, ops in spec["paths"].items() for method, op in ops.items() if "security" in op}
    admin = {(path, method) for path, ops in spec["paths"].items() for method in ops if path.startswith("/api/admin/")}
    assert secured == admin and len(admin) == 4
    for path, method in admin:
        operation = spec["paths"][path][method]
        assert operation["security"] == [{SECURITY_SCHEME: []}]
        assert "401" in operation["responses"]
        # The token is the scheme, not a header parameter (OpenAPI ignores a parameter named Authorization).
        assert "authorization" not in {p["name"].lower() for p in operation.get("parameters", [])}


def raised_codes() -> set[str]:
    """Every error code the backend's source raises or answers with (ApiError, error_response, the routing map)."""
    codes: set[str] = set()
    for path in APP.rglob("*.py"):
        text = path.read_text()
        codes |= set(re.findall(r"ApiError\(\s*\d{3},\s*\"([a-z_]+)\"", text))
        codes |= set(re.findall(r"error_response\(\s*[^,]+,\s*\d{3},\s*\"([a-z_]+)\"", text))
        codes |= set(re.findall(r"\d{3}: \"([a-z_]+)\"", text))  # main.http_error's status -> code map
    return codes


def test_description_lists_every_error_code_the_api_answers_with(docs: TestClient):
    codes = raised_codes()
    assert {"not_found", "insufficient_stock", "request_too_large", "unauthorized", "empty_cart"} <= codes
    assert codes <= set(ERROR_CODES), f"undocumented error codes: {codes - set(ERROR_CODES)}: add them to ERROR_CODES"
    description = docs.get(OPENAPI_PATH).json()["info"]["description"]
    for code, (status, _) in ERROR_CODES.items():
        assert f"| `{code}` | {status} |" in description, code
    for section in ("## Authentication", "## Errors", "## Rate limits", "## Request size", "## Versioning"):
        assert section in description
    assert "Retry-After" in description and "rate_limited" in description and "docs/api/CHANGELOG.md" in description


def test_main_request_bodies_have_examples(docs: TestClient):
    schemas = docs.get(OPENAPI_PATH).json()["components"]["schemas"]
    assert schemas["AddItem"]["examples"] == [{"product_id": 1, "quantity": 2}]
    assert schemas["CheckoutRequest"]["examples"][0]["email"]


ASSET = re.compile(r'(?:src|href)="([^"]+)"')


@pytest.mark.parametrize(
    ("page", "styles"), [(DOCS_PATH, "style-src 'self'"), (REDOC_PATH, "style-src 'self' 'unsafe-inline'")]
)
def test_pages_load_only_their_own_assets_under_a_strict_csp(docs: TestClient, page: str, styles: str):
    res = docs.get(page)
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/html")
    csp = res.headers["content-security-policy"]
    assert "script-src 'self';" in csp and styles in csp and "default-src 'none'" in csp
    assert "<script>" not in res.text and "http" not in res.text  # no inline script, no other origin
    assets = ASSET.findall(res.text)
    assert len(assets) >= 3
    for relative in assets:
        url = f"/api/{relative}"  # relative to the page's folder, /api/
        asset = docs.get(url)
        assert asset.status_code == 200, url
        assert asset.headers["content-type"].split(";")[0] in ("text/javascript", "text/css", "image/png"), url
        assert len(asset.content) > 100, url


def test_vendored_ui_is_swagger_ui_5_and_redoc_2(docs: TestClient):
    assert b"SwaggerUIBundle" in docs.get("/api/docs/swagger-ui-bundle.js").content
    assert b"Redoc" in docs.get("/api/redoc/redoc.standalone.js").content
    assert "openapi.json" in docs.get("/api/docs/swagger-init.js").text


@pytest.mark.parametrize(
    ("old", "new"), [("/openapi.json", OPENAPI_PATH), ("/docs", DOCS_PATH), ("/redoc", REDOC_PATH)]
)
def test_old_paths_redirect_to_the_api_ones(docs: TestClient, old: str, new: str):
    res = docs.get(old, follow_redirects=False)
    assert (res.status_code, res.headers["location"]) == (308, new)


def test_unknown_api_paths_still_answer_the_error_body(docs: TestClient):
    res = docs.get("/api/docs/nothing.js")
    assert res.status_code == 404 and res.json()["error"]["code"] == "not_found"
