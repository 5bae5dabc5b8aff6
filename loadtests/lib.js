// Shared helpers for the shop's k6 scripts: options from the environment, JSON requests.
import http from 'k6/http';

export const BASE_URL = __ENV.BASE_URL || 'http://127.0.0.1:8000';
export const JSON_HEADERS = { 'Content-Type': 'application/json', 'X-Synthetic': '1' };

// A constant-arrival-rate scenario: RATE iterations/s for DURATION, thresholds on p95 and errors.
export function rateOptions(defaultRate, tag) {
  const rate = parseInt(__ENV.RATE || String(defaultRate), 10);
  const thresholds = {};
  thresholds[`http_req_duration{name:${tag}}`] = [`p(95)<${__ENV.P95_MS || 200}`];
  thresholds[`http_req_failed{name:${tag}}`] = ['rate==0'];
  thresholds[`http_reqs{name:${tag}}`] = ['count>0'];
  return {
    discardResponseBodies: false,
    scenarios: {
      load: {
        executor: 'constant-arrival-rate',
        rate,
        timeUnit: '1s',
        duration: __ENV.DURATION || '10s',
        preAllocatedVUs: parseInt(__ENV.VUS || String(Math.max(50, Math.ceil(rate / 10))), 10),
        maxVUs: parseInt(__ENV.MAX_VUS || String(Math.max(200, Math.ceil(rate / 2))), 10),
      },
    },
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
  };
}

export function postJson(path, body, params) {
  return http.post(`${BASE_URL}${path}`, JSON.stringify(body), params);
}
