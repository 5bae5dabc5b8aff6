"""The shop's admin API as load tests need it: restock before and after a run, purge old synthetic orders.

shop_ops knows the shop only through its HTTP API: these are `POST /api/admin/restock` and
`POST /api/admin/synthetic-orders/purge`, called with the environment's admin bearer token. A
failure raises ShopAdminError naming the cause and the fix; the token never appears in a
message or a repr.
"""

from __future__ import annotations

from typing import Any

import httpx

RESTOCK_PATH = "/api/admin/restock"
PURGE_PATH = "/api/admin/synthetic-orders/purge"
_BODY_SHOWN = 300  # characters of an unexpected answer quoted in the error


class ShopAdminError(RuntimeError):
    """An admin call to the shop failed; the message says why and what to do."""


class ShopAdmin:
    """Admin calls to one environment's shop (its base URL, e.g. the router's), each a single POST."""

    def __init__(self, base_url: str, token: str, timeout: float = 30) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        if not token.strip():
            raise ShopAdminError(
                f"no admin token for the shop at {self.base_url}: the environment's admin token file is empty"
            )
        self._token = token.strip()

    def __repr__(self) -> str:
        return f"ShopAdmin(base_url={self.base_url!r}, timeout={self.timeout:g})"

    def restock(self, min_stock: int) -> int:
        """Raise every product below `min_stock` to it; how many products changed (0 when none was low)."""
        return int(self._post(RESTOCK_PATH, {"min_stock": min_stock}, "restocked"))

    def purge_synthetic_orders(self, older_than_seconds: int) -> int:
        """Delete the synthetic orders created more than `older_than_seconds` ago; how many were deleted."""
        return int(self._post(PURGE_PATH, {"older_than_seconds": older_than_seconds}, "deleted"))

    def _post(self, path: str, body: dict[str, Any], field: str) -> Any:
        """POST `body` to `path` with the token; the answer's `field`, or ShopAdminError."""
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout) as http:
                res = http.post(path, json=body, headers={"Authorization": f"Bearer {self._token}"})
        # `from None`: the httpx exception carries the request, and with it the Authorization header.
        except httpx.ConnectError:
            raise ShopAdminError(f"the shop at {self.base_url} does not answer: is the environment up?") from None
        except httpx.TimeoutException:
            raise ShopAdminError(
                f"the shop at {self.base_url} did not finish {path} within {self.timeout:g}s: "
                "is it overloaded (a load test still running)? retry, or raise the timeout"
            ) from None
        except httpx.HTTPError as exc:
            raise ShopAdminError(
                f"the shop at {self.base_url} could not be reached ({type(exc).__name__}: {exc})"
            ) from None
        if res.status_code == 401:
            raise ShopAdminError(
                f"the shop at {self.base_url} refused the admin token: check the environment's admin token file "
                "(state/secrets/<env>-admin-token, or SHOP_OPS_<ENV>_ADMIN_TOKEN_FILE); its backend containers "
                "read the file once, at start (SHOP_ADMIN_TOKEN_FILE): redeploy after replacing it"
            )
        if res.status_code == 404:
            raise ShopAdminError(
                f"the shop at {self.base_url} has no {path} (HTTP 404): its release predates the endpoint; "
                "deploy a newer release"
            )
        if res.status_code != 200:
            raise ShopAdminError(
                f"the shop at {self.base_url} answered {path} with HTTP {res.status_code}: {self._quote(res)}"
            )
        try:
            return res.json()[field]
        except (ValueError, KeyError, TypeError):
            raise ShopAdminError(
                f"the shop at {self.base_url} answered {path} without `{field}`: {self._quote(res)}"
            ) from None

    def _quote(self, res: httpx.Response) -> str:
        """The start of an answer's body, for an error message (the token masked, should anything echo it)."""
        return res.text[:_BODY_SHOWN].replace(self._token, "***")
