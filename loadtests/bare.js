// The ceiling: a bare FastAPI endpoint (/healthz) in the same server process.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, rateOptions } from './lib.js';

export const options = rateOptions(1000, 'bare');

export default function () {
  const res = http.get(`${BASE_URL}/healthz`, { tags: { name: 'bare' } });
  check(res, { 'bare 200': (r) => r.status === 200 });
}
