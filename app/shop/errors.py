"""The documented error body and the exception that produces it."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field


class ApiError(Exception):
    """An expected failure answered with `status` and the error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class ErrorDetail(BaseModel):
    code: str = Field(
        examples=["not_found"], description="stable, machine-readable; the API's description lists every code"
    )
    message: str = Field(examples=["Product 42 not found"])
    request_id: str = Field(examples=["6f1c2a0e9b7d4c3a"])
    # Only in 503 dependency_unavailable answers: what is unavailable.
    dependency: Literal["database", "redis"] | None = Field(default=None, examples=["redis"])


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this body."""

    error: ErrorDetail


# Every `error.code` the API answers with, its status and when (the document's description lists them; a test
# greps app/shop for the codes raised, so a new one cannot go undocumented). `rate_limited` is answered by the
# router in front of the backend (shop-ops's nginx limit_req), with the same body.
ERROR_CODES: dict[str, tuple[int, str]] = {
    "malformed_json": (400, "the request body is not valid JSON"),
    "missing_idempotency_key": (400, "checkout without an `Idempotency-Key` header"),
    "invalid_idempotency_key": (400, "an `Idempotency-Key` longer than 200 characters or not printable"),
    "unauthorized": (401, "an admin operation without the right `Authorization: Bearer` token"),
    "invalid_signature": (401, "a payment callback whose `X-Shop-Signature` is missing, malformed or wrong"),
    "stale_signature": (401, "a correctly signed payment callback more than 5 minutes from the shop's clock"),
    "not_found": (404, "an unknown product, cart, cart line, order or path"),
    "method_not_allowed": (405, "a method the path does not have (`Allow` lists those it has)"),
    "insufficient_stock": (409, "more of a product than is in stock (cart change or checkout)"),
    "product_unavailable": (409, "checkout of a cart holding a product that is no longer sold"),
    "idempotency_key_reused": (409, "an `Idempotency-Key` already used for another cart"),
    "request_too_large": (413, "a request body over the size limit"),
    "validation_error": (422, "invalid input; the message names the first bad field (`query.q: ...`)"),
    "invalid_page": (422, "`page` out of its range"),
    "invalid_limit": (422, "`limit` out of its range"),
    "invalid_quantity": (422, "more than 1000 of one product in a cart"),
    "cart_full": (422, "a new product in a cart that holds 100 different ones already"),
    "empty_cart": (422, "checkout of an empty cart"),
    "empty_update": (422, "an admin product change that names no field"),
    "unknown_order": (422, "a payment callback about an order this shop does not have (nothing recorded)"),
    "rate_limited": (429, "too many requests from this client address; retry after `Retry-After` seconds"),
    "http_error": (400, "any other HTTP-level refusal (the status says which)"),
    "internal_error": (500, "an unexpected failure; quote `request_id` when reporting it"),
    "dependency_unavailable": (503, "PostgreSQL or Redis is unavailable (`error.dependency`); retry shortly"),
    "webhook_not_configured": (503, "a payment callback while `SHOP_PAYMENT_WEBHOOK_SECRET` is not set"),
}


def not_found(kind: str, ident: object) -> ApiError:
    return ApiError(404, "not_found", f"{kind} {ident} not found")


# The error answers a route documents (`responses=ERRORS`); every one has the ErrorBody.
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in {
        400: "Malformed request (bad JSON, missing Idempotency-Key)",
        404: "Unknown id",
        409: "Conflict (insufficient stock, reused Idempotency-Key)",
        422: "Invalid input",
        503: "A dependency (`database` or `redis`, named in `error.dependency`) is unavailable; retry shortly",
    }.items()
}


# Answers of the layers in front of the routes, documented on every /api operation (`responses=LIMITS` on
# each area's router): the backend's body limit (shop/middleware.py, SHOP_MAX_REQUEST_BYTES), and the
# per-client rate limit of the router in front of the backend (nginx limit_req; shop-ops's router).
RETRY_AFTER_HEADER: dict[str, Any] = {
    "Retry-After": {
        "description": "Seconds to wait before sending again",
        "schema": {"type": "integer", "minimum": 1, "examples": [1]},
    }
}
LIMITS: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorBody, "description": "The request body is over the size limit (`request_too_large`)"},
    429: {
        "model": ErrorBody,
        "description": "Too many requests from this client (`rate_limited`, answered by the router); "
        "retry after `Retry-After` seconds",
        "headers": RETRY_AFTER_HEADER,
    },
}
