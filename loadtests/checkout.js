// Checkout with a fresh cart and Idempotency-Key per iteration, marked synthetic.
// With CARTS_FILE (a JSON list of filled cart ids, prepared beforehand) an iteration is the
// checkout request alone; without it, the iteration creates and fills its cart first.
import exec from 'k6/execution';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import { JSON_HEADERS, inStockProducts, postJson, rateOptions } from './lib.js';

export const options = rateOptions(200, 'checkout');
const prepared = __ENV.CARTS_FILE ? new SharedArray('carts', () => JSON.parse(open(__ENV.CARTS_FILE))) : null;

function uuid4() {
  const hex = '0123456789abcdef';
  let out = '';
  for (let i = 0; i < 32; i++) out += hex[Math.floor(Math.random() * 16)];
  return `${out.slice(0, 8)}-${out.slice(8, 12)}-4${out.slice(13, 16)}-a${out.slice(17, 20)}-${out.slice(20)}`;
}

export function setup() {
  return { ids: prepared ? [] : inStockProducts(100) };
}

function freshCart(ids) {
  const cartId = postJson('/api/carts', {}, { headers: JSON_HEADERS }).json('id');
  const productId = ids[Math.floor(Math.random() * ids.length)];
  postJson(`/api/carts/${cartId}/items`, { product_id: productId, quantity: 1 }, { headers: JSON_HEADERS });
  return cartId;
}

export default function (data) {
  let cartId;
  if (prepared) {
    const n = exec.scenario.iterationInTest;
    if (n >= prepared.length) throw new Error(`CARTS_FILE has ${prepared.length} carts; iteration ${n} needs more`);
    cartId = prepared[n];
  } else {
    cartId = freshCart(data.ids);
  }
  const res = postJson('/api/checkout', { cart_id: cartId, email: 'loadtest@example.com' }, {
    headers: Object.assign({ 'Idempotency-Key': uuid4() }, JSON_HEADERS),
    tags: { name: 'checkout' },
  });
  check(res, { 'checkout 201': (r) => r.status === 201 });
}
