"""The router's per-client API rate limit against real nginx: clients from another loopback address
(127.0.0.2) get 429 with Retry-After and the shop's error body past the burst, allow-listed 127.0.0.1
never, probes never; k6 (`K6_LOCAL_IPS`, its `--local-ips`) shows the same under a steady rate."""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from shop_ops.resources.k6 import run_k6
from shop_ops.resources.rate_limit import RateLimit, RateLimitError
from shop_ops.resources.router import Router, Upstreams
from shop_ops.services.processes import free_port

pytestmark = pytest.mark.services  # nginx and k6

# Per second and burst of the router under test: small, so a test needs few requests, and one request's
# share of the rate (0.5 s) is far longer than a few requests on loopback take, even on a busy machine.
RATE, BURST = 2, 5
OTHER_CLIENT = "127.0.0.2"  # any 127/8 address is loopback on Linux; not in the allow-list

K6_SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: {
    steady: { executor: 'constant-arrival-rate', rate: Number(__ENV.RATE), timeUnit: '1s',
              duration: __ENV.DURATION, preAllocatedVUs: 4 },
  },
  thresholds: { checks: ['rate==1'] },
};

export default function () {
  // The edge-cached catalog read: limited like the rest of the API, even when answered from the cache.
  const res = http.get(`${__ENV.BASE_URL}/api/products?limit=1`);
  check(res, {
    '200, or 429 with Retry-After and the error body': (r) => r.status === 200
      || (r.status === 429 && r.headers['Retry-After'] === '1' && r.json('error.code') === 'rate_limited'),
  });
}
"""


class _Handler(BaseHTTPRequestHandler):
    """A stand-in slot service: 200 `ok` to everything."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Content-Type", "text/plain")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def router() -> Iterator[Router]:
    upstream = ThreadingHTTPServer(("127.0.0.1", free_port()), _Handler)
    upstream.daemon_threads = True
    threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    port = upstream.server_address[1]
    state = Path(tempfile.mkdtemp(prefix="shop-ops-test-ratelimit-"))
    state.chmod(0o755)
    router = Router("ratelimit", state / "router", free_port(), api_rate_per_second=RATE, api_burst=BURST)
    router.start(Upstreams("blue", port, port))
    yield router
    router.stop()
    upstream.shutdown()
    shutil.rmtree(state, ignore_errors=True)


def client(router: Router, source: str) -> httpx.Client:
    return httpx.Client(base_url=router.url, transport=httpx.HTTPTransport(local_address=source), timeout=5)


def test_past_the_burst_a_client_gets_429_with_retry_after_and_the_error_body(router: Router):
    with client(router, OTHER_CLIENT) as other:
        # The edge-cached catalog reads are the API too.
        paths = ["/api/carts/abc"] * (BURST + 1) + ["/api/carts/abc", "/api/categories", "/api/products"]
        answers = [other.get(path) for path in paths]
        probes = [other.get(path).status_code for path in ("/healthz", "/readyz", "/version", "/router-health")]
    codes = [a.status_code for a in answers]
    # The burst (and the request the rate admits) pass at once; the rest are refused, none delayed.
    assert codes == [200] * (BURST + 1) + [429] * 3, codes
    refused = answers[-3]
    assert refused.headers["retry-after"] == "1" and refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert error["code"] == "rate_limited" and "retry after 1 s" in error["message"]
    assert error["request_id"] == refused.headers["x-request-id"] and len(error["request_id"]) == 32
    assert refused.headers["x-shop-slot"] == "blue"
    assert probes == [200, 200, 200, 200]  # probes are never limited


def test_allow_listed_address_is_never_limited(router: Router):
    with client(router, "127.0.0.1") as local:
        codes = {local.get("/api/carts/abc").status_code for _ in range(BURST * 4)}
    assert codes == {200}


def test_k6_from_another_loopback_address_is_limited_and_127_0_0_1_is_not(router: Router, tmp_path: Path):
    script = tmp_path / "rate_limit.js"
    script.write_text(K6_SCRIPT)
    rate, seconds = 30, 2
    env = {"BASE_URL": router.url, "RATE": str(rate), "DURATION": f"{seconds}s"}
    other = run_k6(script, {**env, "K6_LOCAL_IPS": OTHER_CLIENT})
    local = run_k6(script, {**env, "K6_LOCAL_IPS": "127.0.0.1"})
    # Every answer was a 200 or a well-formed 429 (the checks threshold), from either address.
    assert other.passed and local.passed, (other, local)
    assert local.error_rate == 0 and local.requests >= rate * seconds - 2, local
    admitted = round(other.requests * (1 - other.error_rate))
    # The burst plus the rate over the run (and a second of slack for the run's edges), the rest 429.
    assert BURST <= admitted <= BURST + RATE * (seconds + 1), (admitted, other)
    assert other.requests - admitted >= rate * seconds - BURST - RATE * (seconds + 1), other


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"rate_per_second": -1}, "api_rate_per_second"),
        ({"burst": -1}, "api_burst"),
        ({"allow": ("127.0.0.1", "localhost")}, "'localhost' is not an address"),
    ],
)
def test_bad_limits_are_refused_naming_the_field(kwargs: dict, cause: str):
    with pytest.raises(RateLimitError, match=cause):
        RateLimit(**kwargs)


def test_rate_limit_config():
    # nginx takes whole requests per second or per minute; networks are written normalized.
    assert RateLimit(0.5).nginx_rate == "30r/m" and RateLimit(0.5).retry_after_seconds == 2
    conf = RateLimit(20, 40, ("127.0.0.1", "10.1.2.3/8")).http_directives()
    assert "127.0.0.1/32 1;" in conf and "10.0.0.0/8 1;" in conf and "rate=20r/s" in conf
    assert RateLimit(0).http_directives() == RateLimit(0).location_directives() == ""  # 0: no limit
