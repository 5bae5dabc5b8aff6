"""The FastAPI application: routes, error bodies, request logs and metrics."""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import orjson
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shop import logs, metrics
from shop.cache import LocalCache, ResponseCache, create_redis
from shop.carts import Carts
from shop.catalog import Catalog
from shop.checkout import Checkout, check_key
from shop.db import create_engine
from shop.errors import ApiError, ErrorBody
from shop.migrate import contract_revisions, known_revisions, schema_state
from shop.schemas import (
    AddItem,
    Cart,
    CheckoutRequest,
    Order,
    Product,
    ProductPage,
    ProductUpdate,
    Readiness,
    SetQuantity,
    VersionInfo,
)
from shop.settings import Settings, get_settings

log = logging.getLogger("shop.http")
JSON = "application/json"
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": desc}
    for code, desc in {
        400: "Malformed request (bad JSON, missing Idempotency-Key)",
        404: "Unknown id",
        409: "Conflict (insufficient stock, reused Idempotency-Key)",
        422: "Invalid input",
    }.items()
}


@dataclass
class Services:
    """What the routes use, built once per worker process."""

    settings: Settings
    engine: AsyncEngine
    catalog: Catalog
    carts: Carts
    checkout: Checkout
    known_revisions: list[str]
    contract_revisions: frozenset[str]


def json_response(body: bytes | dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return Response(content=content, status_code=status, media_type=JSON, headers=headers)


def error_response(request: Request, status: int, code: str, message: str) -> Response:
    request_id = request.scope.get("state", {}).get("request_id", "")
    return json_response({"error": {"code": code, "message": message, "request_id": request_id}}, status)


class RequestContext:
    """ASGI middleware: request id, one JSON log line per request, Prometheus counters."""

    def __init__(self, app: ASGIApp, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")[:64]
                break
        if not request_id:
            request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            metrics.REQUESTS.labels(method, route, str(status)).inc()
            metrics.LATENCY.labels(method, route).observe(elapsed)
            if self.access_log:
                log.info(
                    "request",
                    extra={
                        "fields": {
                            "request_id": request_id,
                            "method": method,
                            "path": scope["path"],
                            "route": route,
                            "status": status,
                            "ms": round(elapsed * 1000, 2),
                        }
                    },
                )


def services(request: Request) -> Services:
    return request.app.state.services


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings: Settings = app.state.settings
    engine = create_engine(settings)
    redis = create_redis(settings)
    cache = ResponseCache(redis, LocalCache(settings.local_cache_ttl_seconds), settings.cache_ttl_seconds)
    catalog = Catalog(engine, cache)
    carts = Carts(redis, catalog, settings.cart_ttl_seconds)
    app.state.services = Services(
        settings, engine, catalog, carts, Checkout(engine, carts, catalog), known_revisions(), contract_revisions()
    )
    metrics.DB_POOL_SIZE.set(settings.database_pool_size)
    try:
        yield
    finally:
        await redis.aclose()
        await engine.dispose()


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; settings default to the validated environment."""
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    app = FastAPI(
        title="Shop API",
        version=settings.version,
        description="Catalog, carts and checkout of the shop operated by shop-ops. "
        "Every error answers with the ErrorBody schema.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.add_middleware(RequestContext, access_log=settings.access_log)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return error_response(request, exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        errors = exc.errors()
        first = errors[0] if errors else {}
        if first.get("type") == "json_invalid":
            return error_response(request, 400, "malformed_json", "the request body is not valid JSON")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(request, 422, "validation_error", f"{where}: {first.get('msg', 'invalid')}")

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(request, exc.status_code, code, str(exc.detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error", extra={"fields": {"request_id": request.scope["state"].get("request_id")}})
        return error_response(request, 500, "internal_error", "unexpected error; the request id is in the logs")

    # ---- catalog
    @app.get("/api/products", response_model=ProductPage, responses=ERRORS, tags=["catalog"])
    async def list_products(
        request: Request,
        q: Annotated[str, Query(max_length=100, description="matches name or description")] = "",
        category: Annotated[str, Query(max_length=100)] = "",
        page: int = 1,
        limit: int = 20,
    ) -> Response:
        return json_response(await services(request).catalog.search(q, category, page, limit))

    @app.get("/api/products/{product_id}", response_model=Product, responses=ERRORS, tags=["catalog"])
    async def get_product(request: Request, product_id: int) -> Response:
        return json_response(await services(request).catalog.product_json(product_id))

    @app.get("/api/categories", response_model=list[str], tags=["catalog"])
    async def list_categories(request: Request) -> Response:
        return json_response(await services(request).catalog.categories_json())

    @app.patch("/api/admin/products/{product_id}", response_model=Product, responses=ERRORS, tags=["admin"])
    async def update_product(
        request: Request,
        product_id: int,
        body: ProductUpdate,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Change a product (needs `Authorization: Bearer <SHOP_ADMIN_TOKEN>`); cached pages are invalidated."""
        token = services(request).settings.admin_token
        if token is None or not secrets.compare_digest(authorization or "", f"Bearer {token.get_secret_value()}"):
            raise ApiError(401, "unauthorized", "a valid admin bearer token is required (SHOP_ADMIN_TOKEN)")
        changes = body.model_dump(exclude_unset=True, exclude_none=True)
        return json_response(await services(request).catalog.update_product(product_id, changes))

    # ---- carts
    @app.post("/api/carts", response_model=Cart, status_code=201, tags=["cart"])
    async def create_cart(request: Request) -> Response:
        return json_response(await services(request).carts.create(), 201)

    @app.get("/api/carts/{cart_id}", response_model=Cart, responses=ERRORS, tags=["cart"])
    async def get_cart(request: Request, cart_id: str) -> Response:
        return json_response(await services(request).carts.get(cart_id))

    @app.post("/api/carts/{cart_id}/items", response_model=Cart, responses=ERRORS, tags=["cart"])
    async def add_item(request: Request, cart_id: str, body: AddItem) -> Response:
        return json_response(await services(request).carts.add(cart_id, body.product_id, body.quantity))

    @app.patch("/api/carts/{cart_id}/items/{product_id}", response_model=Cart, responses=ERRORS, tags=["cart"])
    async def set_item(request: Request, cart_id: str, product_id: int, body: SetQuantity) -> Response:
        return json_response(await services(request).carts.set_quantity(cart_id, product_id, body.quantity))

    @app.delete("/api/carts/{cart_id}/items/{product_id}", response_model=Cart, responses=ERRORS, tags=["cart"])
    async def remove_item(request: Request, cart_id: str, product_id: int) -> Response:
        return json_response(await services(request).carts.remove(cart_id, product_id))

    # ---- checkout and orders
    @app.post("/api/checkout", response_model=Order, status_code=201, responses=ERRORS, tags=["checkout"])
    async def checkout(
        request: Request,
        body: CheckoutRequest,
        idempotency_key: Annotated[
            str | None, Header(description="required; a retry with the same key returns the first order")
        ] = None,
        x_synthetic: Annotated[
            str | None, Header(description="'1' marks smoke/load-test orders, excluded from business figures")
        ] = None,
    ) -> Response:
        """Turn a cart into an order. Answers 201 for a new order, 200 (Idempotent-Replayed: true) for a retry."""
        key = check_key(idempotency_key)
        synthetic = (x_synthetic or "").lower() in ("1", "true", "yes")
        order, created = await services(request).checkout.place(body.cart_id, body.email, key, synthetic)
        if created:
            return json_response(order, 201)
        return json_response(order, 200, {"Idempotent-Replayed": "true"})

    @app.get("/api/orders/{order_id}", response_model=Order, responses=ERRORS, tags=["checkout"])
    async def get_order(request: Request, order_id: int) -> Response:
        return json_response(await services(request).checkout.get(order_id))

    # ---- operations
    @app.get("/healthz", tags=["operations"])
    async def healthz() -> dict[str, str]:
        """The process is alive."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}}, tags=["operations"])
    async def readyz(request: Request) -> Response:
        """Database and Redis answer, and the schema is not behind this code (503 otherwise)."""
        svc = services(request)
        doc: dict[str, Any] = {"status": "ready", "database": "ok", "redis": "ok", "db_revision": None}
        try:
            async with svc.engine.connect() as conn:
                doc["db_revision"] = await conn.scalar(
                    text("SELECT version_num FROM alembic_version")
                    if await conn.scalar(text("SELECT to_regclass('alembic_version') IS NOT NULL"))
                    else text("SELECT NULL")
                )
        except Exception as exc:  # noqa: BLE001 - report any database failure as not ready
            doc["database"] = f"error: {type(exc).__name__}"
        try:
            await svc.carts.redis.ping()
        except Exception as exc:  # noqa: BLE001
            doc["redis"] = f"error: {type(exc).__name__}"
        doc["schema_state"] = schema_state(doc["db_revision"], svc.known_revisions, svc.contract_revisions)
        doc["code_revision"] = svc.known_revisions[-1]
        ok = doc["database"] == "ok" and doc["redis"] == "ok" and doc["schema_state"] != "behind"
        doc["status"] = "ready" if ok else "not_ready"
        return json_response(doc, 200 if ok else 503)

    @app.get("/version", response_model=VersionInfo, tags=["operations"])
    async def version(request: Request) -> dict[str, str]:
        svc = services(request)
        return {
            "version": svc.settings.version,
            "git_commit": svc.settings.git_commit,
            "schema_head": svc.known_revisions[-1],
        }

    @app.get("/metrics", tags=["operations"], response_class=Response)
    async def prometheus_metrics(request: Request) -> Response:
        pool = services(request).engine.pool
        metrics.DB_POOL_CHECKED_OUT.set(pool.checkedout())  # type: ignore[attr-defined]
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE)

    return app


def app_factory() -> FastAPI:
    """Entry point for the ASGI server (granian --factory)."""
    return create_app()
