"""k6's raw samples (`--out json`) parsed into DataFrames: a hand-written file, then real k6 runs against the test shop."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from shop_ops.perf.regression import compare_runs
from shop_ops.resources.k6 import ENDPOINT_COLUMNS, REQUEST_COLUMNS, K6Error, K6Resource, K6Summary, parse_samples
from tests.support import ShopServer


def _point(metric: str, time_: str, value: float, **tags: str) -> str:
    return json.dumps(
        {"metric": metric, "type": "Point", "data": {"time": time_, "value": value, "tags": tags}},
        separators=(",", ":"),
    )


def _request(time_: str, ms: float, failed: bool, **tags: str) -> list[str]:
    tags = {
        "expected_response": "false" if failed else "true",
        "group": "",
        "method": "GET",
        "proto": "HTTP/1.1",
        **tags,
    }
    return [
        _point("http_reqs", time_, 1, **tags),
        _point("http_req_duration", time_, ms, **tags),
        _point("http_req_blocked", time_, 0.1, **tags),
        _point("http_req_failed", time_, 1 if failed else 0, **tags),
    ]


# The layout k6 1.1.0 writes (compact, "metric" first), with its Metric declarations, plus one point
# in another key order and a blank line, which the parser must read too.
SAMPLE_LINES = [
    '{"type":"Metric","data":{"name":"http_req_duration","type":"trend","contains":"time","thresholds":[],"submetrics":null},"metric":"http_req_duration"}',
    *_request(
        "2026-01-01T10:00:00Z",
        50.0,
        False,
        group="::setup",
        name="http://127.0.0.1:9/api/products?page=1",
        url="http://127.0.0.1:9/api/products?page=1",
        status="200",
    ),
    *_request("2026-01-01T10:00:01.5Z", 2.0, False, scenario="load", name="product", url="product", status="200"),
    *_request("2026-01-01T10:00:02.25Z", 4.0, True, scenario="load", name="product", url="product", status="500"),
    *_request(
        "2026-01-01T10:00:03.000000001Z",
        6.0,
        False,
        scenario="load",
        name="http://127.0.0.1:9/healthz?x=1",
        url="http://127.0.0.1:9/healthz?x=1",
        status="200",
    ),
    "",
    '{"type": "Point", "data": {"tags": {"scenario": "load", "name": "product", "url": "product", "method": "GET", "status": "200", "expected_response": "true"}, "value": 8.0, "time": "2026-01-01T10:00:04Z"}, "metric": "http_req_duration"}',
    _point("http_req_failed", "2026-01-01T10:00:04Z", 0, scenario="load", name="product", url="product", method="GET"),
    _point("checks", "2026-01-01T10:00:04Z", 1, scenario="load", check="ok"),
    _point("checks", "2026-01-01T10:00:04Z", 1, scenario="load", check="ok"),
    _point("checks", "2026-01-01T10:00:04Z", 0, scenario="load", check="ok"),
    _point("data_sent", "2026-01-01T10:00:04Z", 100, scenario="load"),
    _point("data_sent", "2026-01-01T10:00:04Z", 20, group="::setup"),
    _point("data_received", "2026-01-01T10:00:04Z", 4000, scenario="load"),
]


def test_parse_samples_of_a_hand_written_file(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text("\n".join(SAMPLE_LINES) + "\n")
    parsed = parse_samples(path)

    assert parsed.total_requests == 5 and not parsed.sampled
    requests = parsed.requests
    assert list(requests.columns) == list(REQUEST_COLUMNS)
    assert requests["endpoint"].tolist() == ["GET /api/products", "product", "product", "GET /healthz", "product"]
    assert requests["scenario"].tolist() == ["setup", "load", "load", "load", "load"]
    assert requests["duration_ms"].tolist() == [50.0, 2.0, 4.0, 6.0, 8.0]
    assert requests["status"].tolist() == ["200", "200", "500", "200", "200"]
    assert requests["expected_response"].tolist() == [True, True, False, True, True]
    assert str(requests["time"].dt.tz) == "UTC" and requests["time"].iloc[3].nanosecond == 1
    assert parsed.duration_s == pytest.approx(4.0)  # no duration given: the span of the requests

    endpoints = parsed.endpoints.set_index(["scenario", "endpoint"])
    assert list(parsed.endpoints.columns) == list(ENDPOINT_COLUMNS)
    product = endpoints.loc[("load", "product")]
    assert product["requests"] == 3 and product["rps"] == pytest.approx(0.75)
    assert product["error_rate"] == pytest.approx(1 / 3)
    assert product["p50_ms"] == 4.0 and product["p95_ms"] == pytest.approx(np.quantile([2.0, 4.0, 8.0], 0.95))
    assert endpoints.loc[("setup", "GET /api/products")]["requests"] == 1
    assert endpoints["requests"].sum() == parsed.total_requests

    assert (parsed.checks_passed, parsed.checks_total) == (2, 3) and parsed.checks_pass_rate == pytest.approx(2 / 3)
    assert (parsed.data_sent_bytes, parsed.data_received_bytes) == (120, 4000)
    assert parsed.durations() == {"GET /healthz": [6.0], "product": [2.0, 4.0, 8.0]}
    assert parsed.durations(include_setup=True)["GET /api/products"] == [50.0]
    assert set(parsed.durations(by_scenario=True)) == {"load GET /healthz", "load product"}

    # Over the cap: a seeded sample of rows (the same each time, in time order); the stats stay exact.
    capped = parse_samples(path, duration_s=10.0, max_rows=2)
    again = parse_samples(path, duration_s=10.0, max_rows=2)
    assert capped.sampled and capped.total_requests == 5 and len(capped.requests) == 2
    assert capped.requests.equals(again.requests) and capped.requests["time"].is_monotonic_increasing
    assert capped.endpoints.drop(columns="rps").equals(parsed.endpoints.drop(columns="rps"))
    assert capped.endpoints["rps"].sum() == pytest.approx(0.5)  # 5 requests over the given 10 s


def test_unreadable_sample_line_is_a_k6_error(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_text(SAMPLE_LINES[1] + "\n{not json\n")
    with pytest.raises(K6Error, match="line 2 is not JSON"):
        parse_samples(path)


# Two endpoints at a constant 5 iterations/s (15 requests/s): a named one (two requests an iteration)
# and an unnamed one with a query string; setup() makes one more request. P95_MS sets a p95 threshold.
SCRIPT = """
import http from 'k6/http';
import { check } from 'k6';
const BASE_URL = __ENV.BASE_URL;
export const options = {
  scenarios: { load: { executor: 'constant-arrival-rate', rate: 5, timeUnit: '1s', duration: __ENV.DURATION,
                       preAllocatedVUs: 5, maxVUs: 10 } },
  thresholds: { http_req_duration: [`p(95)<${__ENV.P95_MS || 5000}`] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};
export function setup() { http.get(`${BASE_URL}/healthz`); }
export default function () {
  const res = http.get(`${BASE_URL}/api/products?page=1&limit=5`, { tags: { name: 'products' } });
  check(res, { 'products 200': (r) => r.status === 200 });
  http.get(`${BASE_URL}/api/products?page=2&limit=5`, { tags: { name: 'products' } });
  http.get(`${BASE_URL}/healthz?probe=1`);
}
"""


def _run(server: ShopServer, tmp_path: Path, duration: str, **env: str) -> tuple[K6Summary, float]:
    script = tmp_path / "samples.js"
    script.write_text(SCRIPT)
    started = time.monotonic()
    summary = K6Resource().run(
        script, {"BASE_URL": server.url, "DURATION": duration, **env}, timeout_s=60, samples=True
    )
    return summary, time.monotonic() - started


@pytest.fixture(scope="module")
def k6_run(server: ShopServer, tmp_path_factory: pytest.TempPathFactory) -> K6Summary:
    summary, _ = _run(server, tmp_path_factory.mktemp("k6"), "3s")
    return summary


def test_sample_counts_match_k6s_summary(k6_run):
    assert k6_run.passed, k6_run.stderr_tail
    samples = k6_run.samples
    assert samples is not None and not samples.sampled
    assert samples.total_requests == len(samples.requests) == k6_run.requests  # k6's http_reqs.count
    endpoints = samples.endpoints.set_index(["scenario", "endpoint"])
    assert endpoints["requests"].sum() == k6_run.requests
    assert endpoints.loc[("setup", "GET /healthz")]["requests"] == 1
    products, health = endpoints.loc[("load", "products")], endpoints.loc[("load", "GET /healthz")]
    assert products["requests"] == 2 * health["requests"] >= 20
    assert (endpoints["error_rate"] == 0).all() and samples.checks_pass_rate == 1.0
    assert samples.checks_total == health["requests"]
    assert samples.data_sent_bytes > 0 and samples.data_received_bytes > 0
    # Rates over k6's own run duration: the per-endpoint rates add up to http_reqs' rate.
    assert endpoints["rps"].sum() == pytest.approx(k6_run.req_per_s)


def test_sample_p95_matches_k6s_summary(k6_run):
    ours = float(np.quantile(k6_run.samples.requests["duration_ms"], 0.95))
    assert ours == pytest.approx(k6_run.p95_ms, rel=1e-3, abs=0.01)


def test_durations_feed_compare_runs(k6_run):
    durations = k6_run.samples.durations()
    assert set(durations) == {"products", "GET /healthz"}
    assert sum(map(len, durations.values())) == k6_run.requests - 1  # all but setup()'s request
    # ~16 /healthz requests in 3 s at <= 20 req/s, under the default 30 samples needed to judge.
    report = compare_runs(durations, durations, min_samples=10)
    assert report.passed, report.problems
    assert {c.name for c in report.comparisons} == set(durations)


def test_impossible_threshold_is_a_failed_result_not_an_error(server, tmp_path):
    summary, seconds = _run(server, tmp_path, "1s", P95_MS="0.001")
    assert not summary.passed and summary.exit_code == 99
    assert summary.failed_thresholds == ["http_req_duration p(95)<0.001"]
    assert summary.samples is not None and summary.samples.total_requests == summary.requests > 0
    assert seconds < 5
