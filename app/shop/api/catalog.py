"""Catalog routes: product search, product pages, categories."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response

from shop.api.deps import ServicesDep
from shop.api.responses import json_response
from shop.catalog import MAX_LIMIT, MAX_PAGE
from shop.errors import ERRORS, LIMITS
from shop.schemas import Product, ProductPage, StorableText

router = APIRouter(prefix="/api", tags=["catalog"], responses=LIMITS)


@router.get("/products", response_model=ProductPage, responses=ERRORS)
async def list_products(
    svc: ServicesDep,
    q: Annotated[str, Query(max_length=100, description="matches name or description"), StorableText] = "",
    category: Annotated[str, Query(max_length=100), StorableText] = "",
    # The bounds are documented only: the catalog checks them itself (422 invalid_page / invalid_limit).
    page: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_PAGE})] = 1,
    limit: Annotated[int, Query(json_schema_extra={"minimum": 1, "maximum": MAX_LIMIT})] = 20,
) -> Response:
    return json_response(await svc.catalog.search(q, category, page, limit))


@router.get("/products/{product_id}", response_model=Product, responses=ERRORS)
async def get_product(svc: ServicesDep, product_id: int) -> Response:
    return json_response(await svc.catalog.product_json(product_id))


@router.get("/categories", response_model=list[str], responses={503: ERRORS[503]})
async def list_categories(svc: ServicesDep) -> Response:
    return json_response(await svc.catalog.categories_json())
