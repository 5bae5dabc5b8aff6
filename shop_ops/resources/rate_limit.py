"""The routers' per-client rate limit of the API, as nginx configuration (`limit_req`).

Each client address gets `rate_per_second` requests per second on the API's locations (`/api/` and the
edge-cached catalog reads), plus a `burst` answered at once (`nodelay`); past that nginx answers 429 with
`Retry-After` and the shop's error body (`{"error": {"code": "rate_limited", "message": ..., "request_id":
...}}`, the ErrorBody that app/shop/errors.py documents, 429 included). Probes (`/healthz`, `/readyz`,
`/version`, `/router-health`) are never limited.

Addresses and networks in `allow` are never limited: all local traffic (release verification, smoke and
load tests, the storefront's server-side calls) comes from 127.0.0.1, so it is allow-listed by default
and no release fails on a 429. nginx's `geo` maps an allowed address to an empty zone key, and
`limit_req` does not count requests whose key is empty.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

ZONE = "shop_api"
ZONE_SIZE = "10m"  # ~160,000 IPv4 client states (64 bytes each); the oldest are dropped when it fills
API_PATHS = ("/api/",)  # the limited locations besides the catalog's (router.py CATALOG_PATHS)
ANSWER_LOCATION = "@shop_rate_limited"
ERROR_CODE = "rate_limited"


class RateLimitError(ValueError):
    """A rate, burst or allow-list entry nginx cannot take; the message names it and the fix."""


@dataclass(frozen=True)
class RateLimit:
    """The API's limit per client address: `rate_per_second` (0: no limit), `burst`, and the `allow`-list."""

    rate_per_second: float = 20.0
    burst: int = 40
    allow: tuple[str, ...] = ("127.0.0.1",)

    def __post_init__(self) -> None:
        if not self.rate_per_second >= 0 or math.isinf(self.rate_per_second):
            raise RateLimitError(
                f"api_rate_per_second {self.rate_per_second!r}: give requests per second per client (0 turns it off)"
            )
        if 0 < self.rate_per_second < 1 / 60:
            raise RateLimitError(f"api_rate_per_second {self.rate_per_second!r}: nginx's least rate is 1 per minute")
        if self.burst < 0:
            raise RateLimitError(f"api_burst {self.burst!r}: give 0 or more requests")
        for entry in self.allow:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise RateLimitError(
                    f"rate_limit_allow entry {entry!r} is not an address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                ) from None

    @property
    def enabled(self) -> bool:
        return self.rate_per_second > 0

    @property
    def nginx_rate(self) -> str:
        """nginx takes whole requests per second or per minute."""
        if float(self.rate_per_second).is_integer():
            return f"{int(self.rate_per_second)}r/s"
        return f"{max(1, round(self.rate_per_second * 60))}r/m"

    @property
    def retry_after_seconds(self) -> int:
        """How long until the client's next request is let through: one request's share of the rate."""
        return max(1, math.ceil(1 / self.rate_per_second)) if self.enabled else 1

    def http_directives(self) -> str:
        """The `http` block's part: the allow-list, the key per client and the zone; empty when off."""
        if not self.enabled:
            return ""
        allowed = "".join(f"        {ipaddress.ip_network(a, strict=False)} 1;\n" for a in self.allow)
        return (
            "\n    # The API's rate limit per client address (shop_ops/resources/rate_limit.py). Allow-listed\n"
            "    # addresses get an empty key, and limit_req does not count requests with an empty key.\n"
            "    geo $shop_rate_exempt {\n"
            "        default 0;\n"
            f"{allowed}"
            "    }\n"
            "    map $shop_rate_exempt $shop_rate_key {\n"
            '        1 "";\n'
            "        default $binary_remote_addr;\n"
            "    }\n"
            f"    limit_req_zone $shop_rate_key zone={ZONE}:{ZONE_SIZE} rate={self.nginx_rate};\n"
            "    limit_req_status 429;\n"
            # Every refused request is in the access log (status 429); the error log keeps its warnings.
            "    limit_req_log_level notice;\n"
        )

    def location_directives(self) -> str:
        """The part of each API location: the limit, and its 429 answered by ANSWER_LOCATION."""
        if not self.enabled:
            return ""
        return (
            f"            limit_req zone={ZONE} burst={self.burst} nodelay;\n"
            f"            error_page 429 = {ANSWER_LOCATION};\n"
        )

    def answer_location(self, repeat_headers: Sequence[str] = ()) -> str:
        """The named location that answers a refused request: 429, Retry-After and the shop's error body.

        `repeat_headers` ("Name $value" each): the server's add_header lines, which a location with
        add_header of its own does not inherit.
        """
        if not self.enabled:
            return ""
        message = f"too many requests from this client; retry after {self.retry_after_seconds} s"
        # The error body with nginx's request id; json.dumps escapes the message, nginx fills the id.
        body = json.dumps({"error": {"code": ERROR_CODE, "message": message, "request_id": "$request_id"}})
        headers = "".join(f"            add_header {h} always;\n" for h in repeat_headers)
        return (
            f"        location {ANSWER_LOCATION} {{\n"
            "            default_type application/json;\n"
            f"            add_header Retry-After {self.retry_after_seconds} always;\n"
            # The body's request id, as the shop's own answers carry it in X-Request-Id.
            "            add_header X-Request-Id $request_id always;\n"
            f"{headers}"
            f"            return 429 '{body}';\n"
            "        }\n"
        )
