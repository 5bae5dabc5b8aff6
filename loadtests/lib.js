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

// Ids of products with at least `minStock` in stock, from the first pages of the catalog (for setup()).
export function inStockProducts(minStock) {
  const ids = [];
  for (let page = 1; page <= 5; page++) {
    const res = http.get(`${BASE_URL}/api/products?page=${page}&limit=100`);
    if (res.status !== 200) throw new Error(`GET /api/products answered ${res.status}: is the shop up at ${BASE_URL}?`);
    for (const p of res.json('items')) {
      if (p.stock >= minStock) ids.push(p.id);
    }
  }
  if (ids.length === 0) throw new Error(`no product with stock >= ${minStock}: seed the catalog first (shop-seed)`);
  return ids;
}
