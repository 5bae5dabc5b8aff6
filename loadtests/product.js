// Product pages over the first PRODUCTS ids (default 10000).
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, rateOptions } from './lib.js';

export const options = rateOptions(500, 'product');
const PRODUCTS = parseInt(__ENV.PRODUCTS || '10000', 10);

export default function () {
  const id = 1 + Math.floor(Math.random() * PRODUCTS);
  const res = http.get(`${BASE_URL}/api/products/${id}`, { tags: { name: 'product' } });
  check(res, { 'product 200': (r) => r.status === 200 });
}
