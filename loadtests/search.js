// Product search with a small vocabulary, so answers come from the cache as in a busy shop.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, rateOptions } from './lib.js';

export const options = rateOptions(500, 'search');
const TERMS = ['lamp', 'oak', 'kettle', 'steel', 'chair', 'cotton', 'mug', 'bamboo', 'desk', 'glass', 'clock', 'wool'];

export default function () {
  const term = TERMS[Math.floor(Math.random() * TERMS.length)];
  const res = http.get(`${BASE_URL}/api/products?q=${term}&page=1&limit=20`, { tags: { name: 'search' } });
  check(res, { 'search 200': (r) => r.status === 200 });
}
