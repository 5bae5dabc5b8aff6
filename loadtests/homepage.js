// The storefront's first page: index.html and the first page of products, as a visitor loads them.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, rateOptions } from './lib.js';

export const options = rateOptions(200, 'homepage');

export default function () {
  const page = http.get(`${BASE_URL}/`, { tags: { name: 'homepage' } });
  check(page, { 'index 200': (r) => r.status === 200 });
  const products = http.get(`${BASE_URL}/api/products?page=1&limit=20`, { tags: { name: 'homepage' } });
  check(products, { 'products 200': (r) => r.status === 200 });
}
