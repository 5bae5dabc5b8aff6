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
    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["Product 42 not found"])
    request_id: str = Field(examples=["6f1c2a0e9b7d4c3a"])
    # Only in 503 dependency_unavailable answers: what is unavailable.
    dependency: Literal["database", "redis"] | None = Field(default=None, examples=["redis"])


class ErrorBody(BaseModel):
    """Every 4xx and 5xx answer has this body."""

    error: ErrorDetail


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
