// Closed-loop GETs of a list of URLs (round robin) as fast as VUS virtual users allow: a read ceiling.
// URLS: comma-separated absolute URLs; VUS (default 64); DURATION (default 10s). Used by bench/load_mix.py.
import http from 'k6/http';
import { check } from 'k6';

const URLS = (__ENV.URLS || '').split(',').filter((u) => u);
if (URLS.length === 0) throw new Error('set URLS to a comma-separated list of URLs');

export const options = {
  scenarios: {
    reads: { executor: 'constant-vus', vus: parseInt(__ENV.VUS || '64', 10), duration: __ENV.DURATION || '10s' },
  },
  summaryTrendStats: ['avg', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export default function () {
  const res = http.get(URLS[(__VU + __ITER) % URLS.length], { tags: { name: 'read' } });
  check(res, { 'read 200': (r) => r.status === 200 });
}
