"""Release verification against a real shop (PostgreSQL + Redis): smoke tests, the k6 check, and their failures."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import httpx
import pytest

from shop_ops.release.verify import k6_check, smoke_test, verify_environment
from shop_ops.resources.k6 import K6Error, K6Resource, parse_summary
from shop_ops.services.processes import free_port
from tests.support import ShopServer

# A real `--summary-export` (k6 1.1.0, loadtests/verify.js at 20 req/s for 2 s against the test shop,
# P95_MS=0.001), root_group and setup_data left out: the p95 threshold was crossed, the error one was not.
REAL_EXPORT = '{"metrics":{"vus":{"max":0,"value":0,"min":0},"http_req_duration{expected_response:true}":{"p(90)":3.3943552000000006,"p(95)":4.3586954,"p(99)":6.14660284,"max":6.24854,"avg":2.2003190000000004,"min":0.4017,"med":2.056648},"http_req_waiting":{"max":6.076022,"avg":2.079588018867925,"min":0.311344,"med":2.008977,"p(90)":3.3443502000000005,"p(95)":4.2530133999999995,"p(99)":5.865571239999999},"http_req_receiving":{"avg":0.0594130754716981,"min":0.017396,"med":0.049384,"p(90)":0.07863700000000001,"p(95)":0.11191299999999993,"p(99)":0.20264503999999967,"max":0.259337},"checks":{"fails":0,"passes":48,"value":1},"vus_max":{"min":50,"max":50,"value":50},"http_reqs":{"count":53,"rate":26.349587018746494},"http_req_blocked":{"max":0.659213,"avg":0.28722503773584906,"min":0.002054,"med":0.310133,"p(90)":0.49636620000000004,"p(95)":0.5089426,"p(99)":0.6308620799999999},"iterations":{"count":40,"rate":19.88648076886528},"iteration_duration":{"p(99)":7.892995109999999,"max":8.168082,"avg":3.4682358500000006,"min":0.766403,"med":3.275801,"p(90)":5.7907831000000005,"p(95)":6.497297299999997},"http_req_failed":{"passes":0,"fails":53,"thresholds":{"rate==0":false},"value":0},"http_req_tls_handshaking":{"avg":0,"min":0,"med":0,"p(90)":0,"p(95)":0,"p(99)":0,"max":0},"http_req_duration":{"avg":2.2003190000000004,"min":0.4017,"med":2.056648,"p(90)":3.3943552000000006,"p(95)":4.3586954,"p(99)":6.14660284,"max":6.24854,"thresholds":{"p(95)<0.001":true}},"data_sent":{"count":6951,"rate":3455.7731956095636},"data_received":{"count":133603,"rate":66422.3372540677},"http_req_connecting":{"med":0.247601,"p(90)":0.41591240000000007,"p(95)":0.42877679999999996,"p(99)":0.5132394399999995,"max":0.590851,"avg":0.2261941320754717,"min":0},"http_req_sending":{"max":0.230884,"avg":0.06131790566037736,"min":0.003875,"med":0.062945,"p(90)":0.09558860000000002,"p(95)":0.11611579999999998,"p(99)":0.1771347199999997}}}'


def test_parse_summary_of_real_k6_output():
    summary = parse_summary(json.loads(REAL_EXPORT), exit_code=99)
    assert summary.p95_ms == pytest.approx(4.3586954)
    assert summary.error_rate == 0
    assert summary.requests == 53
    assert summary.req_per_s == pytest.approx(26.349587018746494)
    # k6 writes "crossed": true for the failed p95 threshold, false for the held error threshold.
    assert summary.thresholds == {"http_req_duration p(95)<0.001": False, "http_req_failed rate==0": True}
    assert summary.failed_thresholds == ["http_req_duration p(95)<0.001"]
    assert not summary.passed


def test_parse_summary_error_rate_from_counts_and_bad_document():
    doc = {"metrics": {"http_req_failed": {"passes": 1, "fails": 3}, "http_reqs": {"count": 4, "rate": 2.0}}}
    summary = parse_summary(doc)
    assert summary.error_rate == 0.25 and summary.passed  # no thresholds, exit 0
    with pytest.raises(K6Error, match="metrics"):
        parse_summary({"root_group": {}})


def test_missing_binary_and_k6_failing_before_a_summary(tmp_path):
    with pytest.raises(K6Error, match="k6 binary not found"):
        K6Resource(binary=str(tmp_path / "no-k6")).run(tmp_path / "x.js", {})
    broken = tmp_path / "broken.js"
    broken.write_text("export default function ( {\n")
    with pytest.raises(K6Error, match=r"exited \d+ without writing a summary: .*broken\.js"):
        K6Resource().run(broken, {}, timeout_s=30)


def test_smoke_test_passes_and_marks_the_order_synthetic(server, postgres, shop_db):
    result = smoke_test(server.url)
    assert result.passed, result.checks
    assert [c.name for c in result.checks] == [
        "catalog", "product page", "create cart", "add to cart", "checkout", "checkout retry", "order lookup",
    ]  # fmt: skip
    assert result.order_id is not None and result.seconds > 0
    database = urlsplit(shop_db).path.lstrip("/")
    row = postgres.psql(f"SELECT synthetic, email FROM orders WHERE id = {result.order_id}", database)
    assert row == "t|smoke-test@shop-ops.invalid"


def test_verify_environment_passes_with_k6_at_50_per_second(server):
    verification = verify_environment(server.url, K6Resource(), rate=50, duration="3s")
    assert verification.passed, verification.reason
    assert verification.reason == ""
    summary = verification.k6
    assert summary is not None and summary.exit_code == 0
    assert summary.requests >= 100  # ~150 iterations, a few extra cart creations, setup's catalog pages
    assert 0 < summary.p95_ms < 200
    assert summary.error_rate == 0
    assert 20 < summary.req_per_s <= 200
    assert summary.thresholds == {"http_req_duration p(95)<200": True, "http_req_failed rate==0": True}


def test_failed_k6_threshold_fails_verification_and_names_it(server):
    summary = k6_check(K6Resource(), server.url, rate=20, duration="1s", p95_ms=0.001)
    assert not summary.passed and summary.exit_code == 99
    assert summary.thresholds["http_req_duration p(95)<0.001"] is False
    assert summary.requests > 0

    verification = verify_environment(server.url, K6Resource(), rate=20, duration="1s", p95_ms=0.001)
    assert verification.smoke.passed and not verification.passed
    assert "http_req_duration p(95)<0.001" in verification.reason


class _FailingCheckout(BaseHTTPRequestHandler):
    """Forwards to the real shop, except POST /api/checkout, which answers 500 like a broken release."""

    upstream = ""

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.command == "POST" and self.path.startswith("/api/checkout"):
            status, payload, kind = 500, b'{"error":{"code":"internal_error","message":"boom"}}', "application/json"
        else:
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            answer = httpx.request(self.command, self.upstream + self.path, content=body, headers=headers, timeout=10)
            status, payload, kind = answer.status_code, answer.content, answer.headers.get("content-type", "")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def broken_checkout(server: ShopServer) -> Iterator[str]:
    handler = type("Handler", (_FailingCheckout,), {"upstream": server.url})
    httpd = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def test_failing_checkout_fails_smoke_and_skips_k6(broken_checkout):
    result = smoke_test(broken_checkout)
    assert not result.passed
    assert [c.ok for c in result.checks] == [True, True, True, True, False]
    assert result.checks[-1].name == "checkout"
    assert result.checks[-1].detail.startswith("checkout answered 500 (expected 201): ")

    verification = verify_environment(broken_checkout, K6Resource(binary="/k6/must/not/run"))
    assert not verification.passed and verification.k6 is None
    assert verification.reason.startswith("smoke test failed: checkout answered 500")
    assert "boom" in verification.reason


def test_nothing_listening_fails_smoke_with_the_reason():
    result = smoke_test(f"http://127.0.0.1:{free_port()}", timeout=2)
    assert not result.passed
    assert result.reason.startswith("smoke test failed: catalog list (GET /api/products) got no answer: ConnectError")
