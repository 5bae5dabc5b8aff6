"""The HTTP API: one router per area, gathered into `api_router` for the app to serve."""

from __future__ import annotations

from fastapi import APIRouter

from shop.api import admin, carts, catalog, checkout, docs, ops, orders, payments

# The areas' routes themselves, in the order the OpenAPI document has always listed them. Not
# `include_router`: FastAPI 0.163 resolves an included router again on every request, one level
# at a time; timed in-process here (2026-11-30, no bench script yet), /healthz went from ~48 to
# ~90 us and a cached product page from ~50 to ~77 us per request. The area routers set each
# route's full path and tags. `docs` (the document and its pages) is left out of the document itself.
# (app.dependency_overrides does not reach routes built by another router; nothing here uses it.)
api_router = APIRouter(
    routes=[
        route for area in (catalog, admin, carts, checkout, orders, payments, ops, docs) for route in area.router.routes
    ]
)
