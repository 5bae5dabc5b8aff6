"""The shop's admin API (`shop_admin`): restock and purge around load tests, order statistics for cost reports.

shop_ops knows the shop only through its HTTP API: `POST /api/admin/restock`,
`POST /api/admin/synthetic-orders/purge` and `GET /api/admin/statistics/orders`, called with the
environment's admin bearer token, read from the environment's token file. A failure raises
ShopAdminError naming the cause and the fix; the token never appears in a message or a repr.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import dagster as dg
import httpx

RESTOCK_PATH = "/api/admin/restock"
PURGE_PATH = "/api/admin/synthetic-orders/purge"
ORDER_STATISTICS_PATH = "/api/admin/statistics/orders"
_BODY_SHOWN = 300  # characters of an unexpected answer quoted in the error


class ShopAdminError(RuntimeError):
    """An admin call to the shop failed; the message says why and what to do."""


@dataclass(frozen=True)
class OrderStatistics:
    """Orders created in [since, until): the real ones and their revenue; synthetic ones only counted."""

    since: datetime
    until: datetime
    orders: int
    revenue_cents: int
    synthetic_orders: int


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

    def order_statistics(self, since: datetime, until: datetime) -> OrderStatistics:
        """The shop's orders created in [since, until) (aware datetimes), synthetic ones apart."""
        answer = self._call("GET", ORDER_STATISTICS_PATH, {"since": since.isoformat(), "until": until.isoformat()})
        try:
            return OrderStatistics(
                since=since, until=until, orders=int(answer["orders"]), revenue_cents=int(answer["revenue_cents"]),
                synthetic_orders=int(answer["synthetic_orders"]),
            )  # fmt: skip
        except (KeyError, TypeError, ValueError):
            raise ShopAdminError(
                f"the shop at {self.base_url} answered {ORDER_STATISTICS_PATH} without orders, revenue_cents and "
                "synthetic_orders"
            ) from None

    def _post(self, path: str, body: dict[str, Any], field: str) -> Any:
        """POST `body` to `path` with the token; the answer's `field`, or ShopAdminError."""
        answer = self._call("POST", path, body)
        try:
            return answer[field]
        except (KeyError, TypeError):
            raise ShopAdminError(f"the shop at {self.base_url} answered {path} without `{field}`") from None

    def _call(self, method: str, path: str, data: dict[str, Any]) -> Any:
        """`method` `path` with the token (GET: `data` as the query, POST: as the JSON body); the JSON answer."""
        try:
            with httpx.Client(base_url=self.base_url, timeout=self.timeout) as http:
                headers = {"Authorization": f"Bearer {self._token}"}
                if method == "GET":
                    res = http.get(path, params=data, headers=headers)
                else:
                    res = http.post(path, json=data, headers=headers)
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
            return res.json()
        except ValueError:
            raise ShopAdminError(
                f"the shop at {self.base_url} answered {path} with no JSON: {self._quote(res)}"
            ) from None

    def _quote(self, res: httpx.Response) -> str:
        """The start of an answer's body, for an error message (the token masked, should anything echo it)."""
        return res.text[:_BODY_SHOWN].replace(self._token, "***")


class ShopAdminResource(dg.ConfigurableResource):
    """Each environment's admin token file (`shop_admin`); `client` pairs one with the environment's URL."""

    # environment -> the file holding its shop's admin token (SHOP_OPS_<ENV>_ADMIN_TOKEN_FILE, or the
    # local environment's secrets/<env>-admin-token).
    token_files: dict[str, str]
    timeout_seconds: float = 30

    def client(self, environment: str, base_url: str) -> ShopAdmin:
        """The admin API of `environment`'s shop at `base_url`; ShopAdminError when its token cannot be read."""
        path = self.token_files.get(environment)
        if not path:
            raise ShopAdminError(
                f"no admin token file for {environment}: set SHOP_OPS_{environment.upper()}_ADMIN_TOKEN_FILE "
                "(load tests restock and purge, cost reports count orders through the admin API)"
            )
        try:
            token = Path(path).read_text().strip()
        except OSError as exc:
            raise ShopAdminError(f"cannot read {environment}'s admin token file {path}: {exc.strerror}") from None
        return ShopAdmin(base_url, token, timeout=self.timeout_seconds)
