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
// Fewer than `minCount` of them is an error that says to restock.
export function inStockProducts(minStock, minCount = 1) {
  const ids = [];
  for (let page = 1; page <= 5; page++) {
    const res = http.get(`${BASE_URL}/api/products?page=${page}&limit=100`);
    if (res.status !== 200) throw new Error(`GET /api/products answered ${res.status}: is the shop up at ${BASE_URL}?`);
    for (const p of res.json('items')) {
      if (p.stock >= minStock) ids.push(p.id);
    }
  }
  if (ids.length < minCount) {
    throw new Error(
      `${ids.length} of the first 500 products have stock >= ${minStock}, ${minCount} needed: restock them ` +
        '(PATCH /api/admin/products/{id} {"stock": N}) or seed the catalog first (shop-seed)',
    );
  }
  return ids;
}

// Milliseconds of a k6-style duration ("90s", "1m30s", "500ms", "1.5h"); a bare number is seconds.
export function parseDuration(text) {
  const value = String(text).trim();
  if (/^\d+(\.\d+)?$/.test(value)) return Math.round(parseFloat(value) * 1000);
  const unitMs = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  const part = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  let match;
  while ((match = part.exec(value)) !== null) {
    if (match.index !== consumed) break;
    total += parseFloat(match[1]) * unitMs[match[2]];
    consumed += match[0].length;
  }
  if (consumed === 0 || consumed !== value.length) throw new Error(`not a duration: ${JSON.stringify(text)} (e.g. 90s, 5m, 500ms)`);
  return Math.round(total);
}
