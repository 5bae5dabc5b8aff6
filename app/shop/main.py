"""The FastAPI application, assembled: lifespan, middleware, error bodies, the API routers."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.cors import CORSMiddleware

from shop import logs, metrics, openapi
from shop.api import api_router, payments
from shop.api.responses import error_response
from shop.dependencies import CANDIDATES as DEPENDENCY_FAILURES
from shop.dependencies import NAMES as DEPENDENCY_NAMES
from shop.dependencies import unavailable_dependency
from shop.errors import ApiError
from shop.middleware import BodyLimit, RequestContext
from shop.services import open_services
from shop.settings import Settings, get_settings

log = logging.getLogger("shop.http")

# What a page of an allowed origin (SHOP_CORS_ORIGINS) may do: the API's methods and the headers its
# calls send (Idempotency-Key on checkout); it may read the request id and a retry hint.
CORS_METHODS = ("GET", "POST", "PATCH", "DELETE")
CORS_HEADERS = ("Content-Type", "Idempotency-Key")
CORS_EXPOSED = ("X-Request-Id", "Retry-After")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Open the services once per worker process; the routes reach them through `api.deps`."""
    async with open_services(app.state.settings) as services:
        app.state.services = services
        yield


async def api_error(request: Request, exc: ApiError) -> Response:
    return error_response(request, exc.status, exc.code, exc.message)


async def validation_error(request: Request, exc: RequestValidationError) -> Response:
    """Bad JSON is a 400; any other invalid input a 422 naming the first bad field."""
    errors = exc.errors()
    first = errors[0] if errors else {}
    if first.get("type") == "json_invalid":
        return error_response(request, 400, "malformed_json", "the request body is not valid JSON")
    where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
    return error_response(request, 422, "validation_error", f"{where}: {first.get('msg', 'invalid')}")


def allowed_methods(request: Request) -> str | None:
    """Every method the OpenAPI document has for the matched path, for a 405's `Allow` header.

    Starlette's own `Allow` names only the methods of the first route that matched the path
    (PATCH, not PATCH and DELETE, for /api/carts/{cart_id}/items/{product_id}).
    """
    path = getattr(request.scope.get("route"), "path", None)
    operations = request.app.openapi()["paths"].get(path)
    return ", ".join(method.upper() for method in operations) if operations else None


async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
    """Routing errors in the ErrorBody, with their headers; a 405's `Allow` lists every method of the path."""
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405 and (allow := allowed_methods(request)):
        headers["Allow"] = allow
    return error_response(request, exc.status_code, code, str(exc.detail), headers or None)


async def dependency_error(request: Request, exc: Exception) -> Response:
    """503 naming the dependency when PostgreSQL or Redis is unavailable; any other failure stays a 500."""
    dependency = unavailable_dependency(exc)
    if dependency is None:
        raise exc
    metrics.DEPENDENCY_UNAVAILABLE.labels(dependency).inc()
    log.warning(
        "dependency unavailable",
        extra={"fields": {"request_id": request.scope["state"].get("request_id"), "dependency": dependency,
                          "error": type(exc).__name__}},
    )  # fmt: skip
    return error_response(
        request,
        503,
        "dependency_unavailable",
        f"{DEPENDENCY_NAMES[dependency]} is unavailable ({type(exc).__name__}); retry shortly",
        {"Retry-After": "1"},
        dependency=dependency,
    )


async def unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error", extra={"fields": {"request_id": request.scope["state"].get("request_id")}})
    return error_response(request, 500, "internal_error", "unexpected error; the request id is in the logs")


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the application; settings default to the validated environment."""
    settings = settings or get_settings()
    logs.configure(settings.log_level)
    app = FastAPI(
        title="Shop API",
        version=settings.version,
        description=openapi.description(settings.max_request_bytes),
        lifespan=lifespan,
        routes=api_router.routes,
        webhooks=payments.webhooks,  # OpenAPI 3.1 `webhooks`: what the payment provider sends
        # The document and its pages are routes of shop/api/docs.py, under /api/ where the routers send them.
        openapi_url=None,
        docs_url=None,
        redoc_url=None,
    )
    openapi.install(app)
    app.state.settings = settings
    # The last added runs first: RequestContext (request id, log line), then CORS, then the body limit.
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    if settings.cors_origins:
        # Explicit lists only (no wildcard, no credentials): what the storefront's calls need.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=CORS_EXPOSED,
            max_age=600,
        )
    app.add_middleware(RequestContext, access_log=settings.access_log)
    app.add_exception_handler(ApiError, api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, http_error)  # type: ignore[arg-type]
    for exc_class in DEPENDENCY_FAILURES:
        app.add_exception_handler(exc_class, dependency_error)
    app.add_exception_handler(Exception, unexpected_error)
    return app


def app_factory() -> FastAPI:
    """Entry point for the ASGI server (granian --factory)."""
    return create_app()
