// Release verification: a short mixed check (product list, product page, add to cart), all synthetic.
// Thresholds on every request of the run: p95 under P95_MS (default 200) and no failed request.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, JSON_HEADERS, inStockProducts, postJson, rateOptions } from './lib.js';

const P95_MS = __ENV.P95_MS || '200';
export const options = {
  ...rateOptions(50, 'verify'),
  thresholds: {
    http_req_duration: [`p(95)<${P95_MS}`],
    http_req_failed: ['rate==0'],
  },
};
const GET_PARAMS = { headers: { 'X-Synthetic': '1' } };
const carts = {};

export function setup() {
  return { ids: inStockProducts(20) };
}

function pick(ids) {
  return ids[Math.floor(Math.random() * ids.length)];
}

export default function (data) {
  const roll = Math.random();
  if (roll < 0.4) {
    const page = 1 + Math.floor(Math.random() * 3);
    const res = http.get(`${BASE_URL}/api/products?page=${page}&limit=20`, { ...GET_PARAMS, tags: { name: 'products' } });
    check(res, { 'products 200': (r) => r.status === 200 });
  } else if (roll < 0.8) {
    const res = http.get(`${BASE_URL}/api/products/${pick(data.ids)}`, { ...GET_PARAMS, tags: { name: 'product' } });
    check(res, { 'product 200': (r) => r.status === 200 });
  } else {
    // One cart per VU, replaced after 10 adds so no line's quantity nears the stock.
    if (!carts[__VU] || carts[__VU].adds >= 10) {
      const created = postJson('/api/carts', {}, { headers: JSON_HEADERS, tags: { name: 'create_cart' } });
      check(created, { 'cart 201': (r) => r.status === 201 });
      carts[__VU] = { id: created.json('id'), adds: 0 };
    }
    const cart = carts[__VU];
    const res = postJson(`/api/carts/${cart.id}/items`, { product_id: pick(data.ids), quantity: 1 }, {
      headers: JSON_HEADERS,
      tags: { name: 'add_to_cart' },
    });
    cart.adds += 1;
    check(res, { 'add 200': (r) => r.status === 200 });
  }
}
