"""Order routes: read a placed order with its lines."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.errors import ERRORS, LIMITS
from shop.schemas import Order

router = APIRouter(prefix="/api/orders", tags=["checkout"], responses=LIMITS)


@router.get("/{order_id}", response_model=Order, responses=ERRORS)
async def get_order(svc: ServicesDep, order_id: int) -> Response:
    return json_response(await svc.checkout.get(order_id))
