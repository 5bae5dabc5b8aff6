// Add-to-cart: each VU keeps one cart and adds products that are in stock (found in setup).
import { check } from 'k6';
import { JSON_HEADERS, inStockProducts, postJson, rateOptions } from './lib.js';

export const options = rateOptions(500, 'add_to_cart');
const carts = {};

export function setup() {
  return { ids: inStockProducts(100) };
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
