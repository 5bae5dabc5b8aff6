"""Checkout route: a cart becomes an order, idempotent per Idempotency-Key."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.checkout import MAX_KEY_LENGTH, check_key
from shop.errors import ERRORS, LIMITS
from shop.schemas import CheckoutRequest, Order

router = APIRouter(prefix="/api", tags=["checkout"], responses=LIMITS)

IDEMPOTENCY_KEY_DOC = "required; a retry with the same key returns the first order"
# Idempotency-Key is required, but checked by check_key (400 missing_idempotency_key, not a
# generic 422): FastAPI sees it as optional and leaves it out of the document, which gets it here.
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "idempotency-key",
    "in": "header",
    "required": True,
    "description": IDEMPOTENCY_KEY_DOC,
    # check_key takes any printable text; what clients should send is visible ASCII (a UUID, say).
    "schema": {"type": "string", "pattern": f"^[!-~]{{1,{MAX_KEY_LENGTH}}}$", "title": "Idempotency-Key"},
}
REPLAYED = {
    200: {
        "model": Order,
        "description": "A retry with the same Idempotency-Key: the order it placed",
        "headers": {"Idempotent-Replayed": {"description": "always `true`", "schema": {"type": "string"}}},
    }
}


@router.post(
    "/checkout",
    response_model=Order,
    status_code=201,
    responses={**REPLAYED, **ERRORS},
    openapi_extra={"parameters": [IDEMPOTENCY_KEY_PARAMETER]},
)
async def checkout(
    svc: ServicesDep,
    body: CheckoutRequest,
    idempotency_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    x_synthetic: Annotated[
        str | None, Header(description="'1' marks smoke/load-test orders, excluded from business figures")
    ] = None,
) -> Response:
    """Turn a cart into an order. Answers 201 for a new order, 200 (Idempotent-Replayed: true) for a retry."""
    key = check_key(idempotency_key)
    synthetic = (x_synthetic or "").lower() in ("1", "true", "yes")
    order, created = await svc.checkout.place(body.cart_id, body.email, key, synthetic)
    if created:
        return json_response(order, 201)
    return json_response(order, 200, {"Idempotent-Replayed": "true"})
