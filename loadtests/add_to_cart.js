// Add-to-cart: each VU keeps one cart and adds products that are in stock (found in setup).
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, JSON_HEADERS, postJson, rateOptions } from './lib.js';

export const options = rateOptions(500, 'add_to_cart');
const carts = {};

export function setup() {
  const ids = [];
  for (let page = 1; page <= 5; page++) {
    const res = http.get(`${BASE_URL}/api/products?page=${page}&limit=100`);
    for (const p of res.json('items')) {
      if (p.stock >= 100) ids.push(p.id);
    }
  }
  if (ids.length === 0) throw new Error('no product with stock >= 100: seed the catalog first (shop-seed)');
  return { ids };
}

export default function (data) {
  if (!carts[__VU] || carts[__VU].adds >= 50) {
    carts[__VU] = { id: postJson('/api/carts', {}, { headers: JSON_HEADERS }).json('id'), adds: 0 };
  }
  const cart = carts[__VU];
  const productId = data.ids[Math.floor(Math.random() * data.ids.length)];
  const res = postJson(`/api/carts/${cart.id}/items`, { product_id: productId, quantity: 1 }, {
    headers: JSON_HEADERS,
    tags: { name: 'add_to_cart' },
  });
  cart.adds += 1;
  check(res, { 'add 200': (r) => r.status === 200 });
}
