"""Cart routes: create a cart, read it, add, change and remove its items."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from fastapi.responses import Response

from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.errors import ERRORS, LIMITS
from shop.schemas import AddItem, Cart, SetQuantity, StorableText

router = APIRouter(prefix="/api/carts", tags=["cart"], responses=LIMITS)

# Any text is looked up (an id of the wrong shape is a 404), but not NUL or invalid UTF-8.
CartId = Annotated[str, StorableText]


@router.post("", response_model=Cart, status_code=201, responses={503: ERRORS[503]})
async def create_cart(svc: ServicesDep) -> Response:
    return json_response(await svc.carts.create(), 201)


@router.get("/{cart_id}", response_model=Cart, responses=ERRORS)
async def get_cart(svc: ServicesDep, cart_id: CartId) -> Response:
    return json_response(await svc.carts.get(cart_id))


@router.post("/{cart_id}/items", response_model=Cart, responses=ERRORS)
async def add_item(svc: ServicesDep, cart_id: CartId, body: AddItem) -> Response:
    return json_response(await svc.carts.add(cart_id, body.product_id, body.quantity))


@router.patch("/{cart_id}/items/{product_id}", response_model=Cart, responses=ERRORS)
async def set_item(svc: ServicesDep, cart_id: CartId, product_id: int, body: SetQuantity) -> Response:
    return json_response(await svc.carts.set_quantity(cart_id, product_id, body.quantity))


@router.delete("/{cart_id}/items/{product_id}", response_model=Cart, responses=ERRORS)
async def remove_item(svc: ServicesDep, cart_id: CartId, product_id: int) -> Response:
    return json_response(await svc.carts.remove(cart_id, product_id))
