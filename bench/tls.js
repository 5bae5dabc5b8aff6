// bench/tls.py's load: GET TARGET_PATH at RATE/s for DURATION (constant arrival rate, loadtests/lib.js).
// NO_REUSE=1: a new connection (TCP, and TLS on https) for every request (k6's noConnectionReuse).
// EXPECT_PROTO (e.g. "HTTP/2.0"): the rate `proto_expected` and its threshold say whether every answer used it.
// k6's http_req_duration leaves out connecting and the TLS handshake: `with_connect` adds them back, and
// EXTRA_OUT names a JSON file that handleSummary writes with its p95 and the handshake's and connect's means.
import http from 'k6/http';
import { check } from 'k6';
import { Rate, Trend } from 'k6/metrics';
import { BASE_URL, rateOptions } from '../loadtests/lib.js';

const PATH = __ENV.TARGET_PATH || '/healthz';
const EXPECT_PROTO = __ENV.EXPECT_PROTO || '';
const protoExpected = new Rate('proto_expected');
const withConnect = new Trend('with_connect', true);

export const options = rateOptions(500, 'tls');
options.noConnectionReuse = __ENV.NO_REUSE === '1';
if (EXPECT_PROTO) options.thresholds.proto_expected = ['rate==1'];

export default function () {
  const res = http.get(`${BASE_URL}${PATH}`, { tags: { name: 'tls' } });
  check(res, { 'status 200': (r) => r.status === 200 });
  if (EXPECT_PROTO && res.status !== 0) protoExpected.add(res.proto === EXPECT_PROTO);
  withConnect.add(res.timings.connecting + res.timings.tls_handshaking + res.timings.duration);
}

export function handleSummary(data) {
  if (!__ENV.EXTRA_OUT) return {};
  const stat = (metric, name) => (data.metrics[metric] ? data.metrics[metric].values[name] : null);
  const extra = {
    with_connect_p95_ms: stat('with_connect', 'p(95)'),
    tls_handshaking_avg_ms: stat('http_req_tls_handshaking', 'avg'),
    connecting_avg_ms: stat('http_req_connecting', 'avg'),
    dropped_iterations: stat('dropped_iterations', 'count') || 0,
  };
  return { [__ENV.EXTRA_OUT]: JSON.stringify(extra) };
}
