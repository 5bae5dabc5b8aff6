"""Admin routes: change a product (bearer token)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from shop.api.deps import AuthorizationHeader, ServicesDep, require_admin
from shop.api.responses import json_response
from shop.errors import ERRORS, ErrorBody
from shop.schemas import Product, ProductUpdate

router = APIRouter(prefix="/api/admin", tags=["admin"])

ADMIN_ERRORS = {**ERRORS, 401: {"model": ErrorBody, "description": "Missing or wrong admin bearer token"}}


@router.patch("/products/{product_id}", response_model=Product, responses=ADMIN_ERRORS)
async def update_product(
    svc: ServicesDep, product_id: int, body: ProductUpdate, authorization: AuthorizationHeader = None
) -> Response:
    """Change a product (needs `Authorization: Bearer <SHOP_ADMIN_TOKEN>`); cached pages are invalidated."""
    require_admin(svc.settings, authorization)
    changes = body.model_dump(exclude_unset=True, exclude_none=True)
    return json_response(await svc.catalog.update_product(product_id, changes))
