"""Admin routes (bearer token): change a product, restock the catalog, purge synthetic orders, order statistics."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from shop.api.deps import AuthorizationHeader, ServicesDep, require_admin
from shop.api.responses import json_response
from shop.errors import ERRORS, LIMITS, ApiError, ErrorBody
from shop.schemas import (
    OrderStatistics,
    Product,
    ProductUpdate,
    PurgeResult,
    PurgeSyntheticOrders,
    RestockRequest,
    RestockResult,
)

router = APIRouter(prefix="/api/admin", tags=["admin"], responses=LIMITS)

ADMIN_ERRORS = {**ERRORS, 401: {"model": ErrorBody, "description": "Missing or wrong admin bearer token"}}
# The bulk operations name no id and cannot conflict: malformed JSON, the token, invalid input, and
# (as every route that reaches PostgreSQL or Redis) 503 when one is unavailable.
BULK_ERRORS = {
    400: {"model": ErrorBody, "description": "The body is not valid JSON"},
    401: ADMIN_ERRORS[401],
    422: ADMIN_ERRORS[422],
    503: ADMIN_ERRORS[503],
}


@router.patch("/products/{product_id}", response_model=Product, responses=ADMIN_ERRORS)
async def update_product(
    svc: ServicesDep, product_id: int, body: ProductUpdate, authorization: AuthorizationHeader = None
) -> Response:
    """Change a product (needs `Authorization: Bearer <SHOP_ADMIN_TOKEN>`); cached pages are invalidated."""
    require_admin(svc.settings, authorization)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return json_response(await svc.catalog.update_product(product_id, changes))


@router.post(
    "/restock",
    response_model=RestockResult,
    responses=BULK_ERRORS,
    summary="Raise low stock to a minimum",
    response_description="How many products were restocked",
)
async def restock(svc: ServicesDep, body: RestockRequest, authorization: AuthorizationHeader = None) -> Response:
    """Every product with less than `min_stock` in stock gets exactly `min_stock`, in one statement
    (needs `Authorization: Bearer <SHOP_ADMIN_TOKEN>`).

    Run before and after a load test, never during one: when any product changed, the catalog
    version moves on and every cached search page is left behind. Idempotent: a repeat restocks
    0 products and leaves the caches alone.
    """
    require_admin(svc.settings, authorization)
    restocked = await svc.catalog.restock(body.min_stock)
    return json_response({"restocked": restocked, "min_stock": body.min_stock})


@router.post(
    "/synthetic-orders/purge",
    response_model=PurgeResult,
    responses=BULK_ERRORS,
    summary="Delete old synthetic orders",
    response_description="How many synthetic orders were deleted",
)
async def purge_synthetic_orders(
    svc: ServicesDep, body: PurgeSyntheticOrders, authorization: AuthorizationHeader = None
) -> Response:
    """Delete the synthetic orders (placed with `X-Synthetic: 1` by smoke and load tests) created
    more than `older_than_seconds` ago, with their lines (needs `Authorization: Bearer <SHOP_ADMIN_TOKEN>`).

    Real orders are never deleted. Runs in batches of 5,000 orders per transaction, so a big
    purge holds no long locks; orders placed after the purge started are left for the next one.
    """
    require_admin(svc.settings, authorization)
    return json_response({"deleted": await svc.retention.purge_synthetic_orders(body.older_than_seconds)})


# A window is at most this long (a year and a day): reports ask for a month or a day.
MAX_WINDOW_DAYS = 366


@router.get(
    "/statistics/orders",
    response_model=OrderStatistics,
    responses={401: ADMIN_ERRORS[401], 422: ADMIN_ERRORS[422], 503: ADMIN_ERRORS[503]},
    summary="Orders and revenue over a time window",
    response_description="Real orders and revenue; synthetic orders counted apart",
)
async def order_statistics(
    svc: ServicesDep,
    since: Annotated[datetime, Query(description="start of the window, included (ISO 8601 with a UTC offset)")],
    until: Annotated[datetime, Query(description="end of the window, excluded (ISO 8601 with a UTC offset)")],
    authorization: AuthorizationHeader = None,
) -> Response:
    """How many real orders were created in [`since`, `until`) and their revenue; orders placed with
    `X-Synthetic: 1` (smoke and load tests) are counted apart and never in the figures (needs
    `Authorization: Bearer <SHOP_ADMIN_TOKEN>`). The pipeline divides its cost by these orders.
    """
    require_admin(svc.settings, authorization)
    for name, value in (("since", since), ("until", until)):
        if value.tzinfo is None:
            raise ApiError(422, "validation_error", f"{name} needs a UTC offset, e.g. 2026-11-01T00:00:00Z")
    if until <= since:
        raise ApiError(422, "validation_error", "until must be after since")
    if (until - since).days > MAX_WINDOW_DAYS:
        raise ApiError(422, "validation_error", f"the window may span at most {MAX_WINDOW_DAYS} days")
    figures = await svc.statistics.orders(since, until)
    return json_response(
        {
            "since": since.isoformat(),
            "until": until.isoformat(),
            "orders": figures.orders,
            "revenue_cents": figures.revenue_cents,
            "synthetic_orders": figures.synthetic_orders,
        }
    )
