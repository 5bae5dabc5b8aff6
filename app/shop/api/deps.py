"""Dependencies of the API routes in one place: the worker's services, the admin-token check, typed aliases."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, Header, Request

from shop.errors import ApiError
from shop.services import Services
from shop.settings import Settings


async def get_services(request: Request) -> Services:
    """The services the lifespan opened for this worker process (async: no thread-pool hop per request)."""
    return request.app.state.services


ServicesDep = Annotated[Services, Depends(get_services)]

# The raw `Authorization` header of the admin routes; require_admin checks it. Documented as the admin
# operations' bearer security scheme (shop/openapi.py), not as a parameter (OpenAPI ignores one named so).
AuthorizationHeader = Annotated[str | None, Header(include_in_schema=False)]


def require_admin(settings: Settings, authorization: str | None) -> None:
    """Raise 401 unless `authorization` is `Bearer <SHOP_ADMIN_TOKEN>` (no token configured: nobody is admin).

    Called first in an admin route's body rather than declared as a `Depends`: FastAPI runs
    dependencies before it validates the path and body, and the admin routes answer invalid
    input with 422 before they look at the token.
    """
    token = settings.admin_token
    if token is None or not secrets.compare_digest(authorization or "", f"Bearer {token.get_secret_value()}"):
        raise ApiError(401, "unauthorized", "a valid admin bearer token is required (SHOP_ADMIN_TOKEN)")
