"""The OpenAPI document of the shop's API: its description (auth, errors, limits, versioning), security and servers.

One document per app (FastAPI generates it from the routes once); `for_request` gives it the server of the URL
it is read through, `main` (`shop-openapi`) prints it without a running server or any service, for people and
tools (the pipeline's `api_docs` asset reads `app.openapi()` of the image itself instead, which older releases
without this command answer too).
"""

from __future__ import annotations

import re
import sys
from typing import Any

import orjson
from fastapi import FastAPI
from starlette.datastructures import Headers

from shop.errors import ERROR_CODES
from shop.payments import SIGNATURE_HEADER, TOLERANCE_SECONDS, sign

DOCS_PATH = "/api/docs"
REDOC_PATH = "/api/redoc"
OPENAPI_PATH = "/api/openapi.json"
SECURITY_SCHEME = "adminBearer"
ADMIN_TAG = "admin"
# What the routers allow by default (shop-ops `security.api_rate_per_second`, `security.api_burst`); an
# environment may set others, and its 429 answers always say when to retry.
DEFAULT_RATE_PER_SECOND = 20
DEFAULT_BURST = 40
# The payment callback's worked example (not any environment's secret).
EXAMPLE_SECRET = "whsec_4f9c2b7e1d8a6035"
EXAMPLE_TIMESTAMP = 1796119200
EXAMPLE_BODY = '{"id":"evt_1QxY2Z3a4b5c","type":"payment.paid","order_id":17,"amount_cents":9198,"created":1796119200}'
EXAMPLE_SIGNATURE = sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY.encode())
# A Host header the document may name as its server: a DNS name or an IPv4/IPv6 literal, with a port.
_HOST = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?$")

TAGS = [
    {"name": "catalog", "description": "Products and categories (anonymous reads, cached for about a second)."},
    {"name": "cart", "description": "Carts live 7 days after their last change; ids are 32 hex characters."},
    {"name": "checkout", "description": "A cart becomes an order, once per `Idempotency-Key`; orders read back."},
    {"name": "payments", "description": "The payment provider's signed callback (also under `webhooks`)."},
    {"name": "admin", "description": "Operations for the shop's staff: `Authorization: Bearer <admin token>`."},
    {"name": "operations", "description": "Probes for load balancers and the release pipeline."},
]


def description(max_request_bytes: int) -> str:
    """The document's description (Markdown): the rules every operation shares."""
    codes = "\n".join(
        f"| `{code}` | {status} | {when} |"
        for code, (status, when) in sorted(ERROR_CODES.items(), key=lambda item: (item[1][0], item[0]))
    )
    return f"""Catalog, carts and checkout of the shop operated by shop-ops.

The documentation pages: [Swagger UI]({DOCS_PATH}) (try operations out) and [ReDoc]({REDOC_PATH}); this document
at `{OPENAPI_PATH}`. Each environment serves its own, with that environment's URL as the server.

## Authentication

Catalog, cart, checkout and order operations need no credentials. The admin operations (tag `admin`) need the
admin bearer token: `Authorization: Bearer <token>` (security scheme `{SECURITY_SCHEME}`); without it or with
another token they answer 401 `unauthorized`. The shop's operators hand the token out; it is never in a URL.
The payment provider's callback carries no token: it is signed (see Payment callback below).

## Errors

Every 4xx and 5xx answer has the `ErrorBody` schema:

```json
{{"error": {{"code": "not_found", "message": "Product 42 not found", "request_id": "6f1c2a0e9b7d4c3a"}}}}
```

`code` is stable and meant for programs; `message` is for people and may change. `request_id` is also in the
`X-Request-Id` header: quote it when you report a problem. A 503 names the unavailable `dependency`. The codes:

| code | status | when |
| --- | --- | --- |
{codes}

## Rate limits

An environment may limit requests per client address on `/api/`; the local environments' routers do, by
default {DEFAULT_RATE_PER_SECOND} requests per second with a burst of {DEFAULT_BURST} answered at once. Past the
limit the answer is `429` with `Retry-After` (seconds) and the error body, code `rate_limited`: wait that long,
then retry. Cached catalog reads count too; the probes (`/healthz`, `/readyz`, `/version`) are never limited.
The shop's own clients (release checks, load tests) are on an allow-list and never limited.

## Request size

A request body over {max_request_bytes} bytes is refused with `413` `request_too_large`, before any operation
reads it (with or without `Content-Length`).

## Payment callback

The payment provider sends its events (`payment.paid`, `payment.failed`, `payment.refunded`; the `webhooks`
section has the event's schema) to `POST /api/payments/webhook`, signed with the environment's webhook secret
(`SHOP_PAYMENT_WEBHOOK_SECRET`): the header `{SIGNATURE_HEADER}: t=<unix seconds>,v1=<signature>`, where the
signature is the lowercase hex HMAC-SHA256, keyed with the secret, of the timestamp, a dot and the raw body
exactly as sent. More than one `v1=` may be sent (while a secret is replaced); one must match. A signature
more than {TOLERANCE_SECONDS // 60} minutes from the shop's clock is refused (`stale_signature`), a wrong one
with `invalid_signature` (both 401). Worked example, secret `{EXAMPLE_SECRET}`, `t={EXAMPLE_TIMESTAMP}`:

```text
signed text: {EXAMPLE_TIMESTAMP}.{EXAMPLE_BODY}
header:      {SIGNATURE_HEADER}: t={EXAMPLE_TIMESTAMP},v1={EXAMPLE_SIGNATURE}
```

Each event is recorded once per `id`: a replay answers 200 with `duplicate: true` and changes nothing. An order's
`payment_status` moves pending -> paid or failed, failed -> paid, paid -> refunded, never backwards: an event
that would (a failure after the payment, a refund of an unpaid order) is recorded with `applied: false`. An
event about an unknown order is refused with 422 `unknown_order` and not recorded. Any answer but 200 means:
send the event again later.

## Synthetic orders

Smoke and load tests send `X-Synthetic: 1` at checkout: such orders are kept out of every business figure.

## Versioning

`info.version` is the backend's release version (semantic versioning, `MAJOR.MINOR.PATCH`), and this document
changes with it. A breaking change (a path, operation or response field removed, a request field made
required, a type narrowed) comes only with a new major version: the delivery pipeline compares every build's
document with the previous release's and keeps a breaking build from being released otherwise. New operations,
optional fields and response fields come in minor versions. Deprecated operations are marked `deprecated` and
announced in the API changelog (`docs/api/CHANGELOG.md` in the shop's repository) at least one minor version
before a major version removes them.
"""


def finish(document: dict[str, Any]) -> dict[str, Any]:
    """Add what FastAPI does not generate: the tags, and the admin bearer scheme on the admin operations."""
    document = {**document, "tags": TAGS}
    components = document.setdefault("components", {})
    components["securitySchemes"] = {
        SECURITY_SCHEME: {
            "type": "http",
            "scheme": "bearer",
            "description": "The admin token (`SHOP_ADMIN_TOKEN` of the environment), for the admin operations",
        }
    }
    for operations in document["paths"].values():
        for operation in operations.values():
            if ADMIN_TAG in operation.get("tags", ()):
                operation["security"] = [{SECURITY_SCHEME: []}]
    return document


def install(app: FastAPI) -> None:
    """Make `app.openapi()` return the finished document (generated once, then kept in `app.openapi_schema`)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = finish(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def base_document(app: FastAPI) -> dict[str, Any]:
    """The app's document, servers left to the caller."""
    return app.openapi()


def server_url(headers: Headers, scheme: str) -> str:
    """The URL the client used, from the Host header and the proxy's X-Forwarded-Proto; "/" when unknown.

    The routers pass the client's Host and set X-Forwarded-Proto (http or https), as an AWS ALB does; only
    the first proxy's value counts. A Host that is not a plain name or address gives the relative "/"
    (the document's own origin), so nothing odd a client sends is written into its document.
    """
    proto = headers.get("x-forwarded-proto", "").split(",")[0].strip().lower() or scheme
    if proto not in ("http", "https"):
        proto = scheme if scheme in ("http", "https") else "http"
    host = headers.get("host", "")
    if not _HOST.fullmatch(host):
        return "/"
    return f"{proto}://{host}"


def for_request(app: FastAPI, headers: Headers, scheme: str) -> bytes:
    """The document as JSON, its server the URL this request came through."""
    server = {
        "url": server_url(headers, scheme),
        "description": "this environment (the URL this document was read from)",
    }
    return orjson.dumps({**base_document(app), "servers": [server]})


def main() -> None:
    """`shop-openapi`: print the document (servers: "/") without settings, a database or Redis.

    The version is SHOP_VERSION (the image sets it at build); the body limit SHOP_MAX_REQUEST_BYTES or the
    default. Nothing is connected: the app is assembled, never started.
    """
    from shop.main import create_app
    from shop.settings import Settings

    placeholder = {"database_url": "postgresql+asyncpg://docs@127.0.0.1/docs", "redis_url": "redis://127.0.0.1"}
    app = create_app(Settings(**placeholder, env="dev"))  # type: ignore[arg-type]
    document = {**base_document(app), "servers": [{"url": "/"}]}
    sys.stdout.buffer.write(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")


if __name__ == "__main__":
    main()
