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
