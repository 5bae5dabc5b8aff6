// The realistic mix under one of four load profiles (PROFILE: load, stress, spike, soak).
// Three scenarios, one per flow, each an arrival-rate executor with its share of RATE iterations/s:
//   browse   70%: homepage (GET / when STOREFRONT != '0', the first page of products, the categories)
//                 40%, a search over a small vocabulary 40%, a product page 20%; an iteration is one page view
//   cart     20%: create a cart, add an item, view the cart
//   checkout 10%: a fresh cart with 1-2 items, POST /api/checkout (fresh Idempotency-Key), the order
// Every request carries X-Synthetic: 1, a `name` tag and a check on its status; options tag the profile.
// Parameters (env): BASE_URL, PROFILE, RATE, DURATION, MAX_RATE, STEPS, SPIKE_FACTOR, P95_MS, ABORT_DELAY,
// MAX_VUS, MIN_STOCK, STOREFRONT, EMAIL. shop_ops/perf/profiles.py builds them (LoadProfile.k6_env) and
// mirrors the stage arithmetic below (stress_plateaus, spike_window): change both together.
import http from 'k6/http';
import { check } from 'k6';
import { BASE_URL, JSON_HEADERS, inStockProducts, parseDuration, postJson } from './lib.js';

const PROFILES = ['load', 'stress', 'spike', 'soak'];
const DEFAULT_DURATION = { load: '60s', stress: '300s', spike: '60s', soak: '1h' };
const PROFILE = __ENV.PROFILE || 'load';
if (!PROFILES.includes(PROFILE)) throw new Error(`PROFILE must be one of ${PROFILES.join(', ')}, got ${PROFILE}`);

function positive(name, fallback) {
  const raw = __ENV[name];
  const value = raw === undefined || raw === '' ? fallback : Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a number above 0, got ${raw}`);
  return value;
}

const RATE = positive('RATE', 10);
const DURATION_MS = parseDuration(__ENV.DURATION || DEFAULT_DURATION[PROFILE]);
const MAX_RATE = positive('MAX_RATE', 10 * RATE);
const STEPS = Math.round(positive('STEPS', 10));
const SPIKE_FACTOR = positive('SPIKE_FACTOR', 10);
const P95_MS = positive('P95_MS', 200);
const ABORT_DELAY = __ENV.ABORT_DELAY || '10s';
const MAX_VUS = Math.round(positive('MAX_VUS', 600));
const MIN_STOCK = Math.round(positive('MIN_STOCK', 50));
const STOREFRONT = (__ENV.STOREFRONT || '1') !== '0';
const EMAIL = __ENV.EMAIL || 'loadtest@shop-ops.invalid';
// A stage's quick ramp: a tenth of the stage, at most this long.
const RAMP_MAX_MS = 1000;

// Each flow: its share of the rate and the requests of one iteration (on average), for sizing VUs.
const FLOWS = {
  browse: { share: 0.7, requests: 0.4 * (STOREFRONT ? 3 : 2) + 0.4 + 0.2 },
  cart: { share: 0.2, requests: 3 },
  checkout: { share: 0.1, requests: 5.5 },
};
// VUs per flow: enough preallocated for requests of 100 ms at the peak rate, at most enough for
// requests of 1 s (beyond that k6 drops iterations: the shop is broken anyway), within MAX_VUS.
const VU_PREALLOCATED_S = 0.1;
const VU_MAX_S = 1.0;

// The total rate over time: constant, or ramping stages of {target, ms} from startRate.
function schedule() {
  if (PROFILE === 'load' || PROFILE === 'soak') return { constant: true, rate: RATE, ms: DURATION_MS, peak: RATE };
  if (PROFILE === 'stress') {
    if (STEPS < 2) throw new Error(`STEPS must be at least 2 (a stress run climbs from RATE to MAX_RATE), got ${STEPS}`);
    if (MAX_RATE <= RATE) throw new Error(`MAX_RATE (${MAX_RATE}) must be above RATE (${RATE})`);
    // STEPS equal stages; stage k holds RATE + (MAX_RATE - RATE) * k / (STEPS - 1), reached by a quick ramp
    // at its start (stage 0 starts at RATE: no ramp). The plateau of stage k: [k * stage + ramp, (k + 1) * stage).
    const stageMs = Math.floor(DURATION_MS / STEPS);
    if (stageMs < 1000) throw new Error(`DURATION / STEPS must be at least 1s, got ${stageMs}ms a stage`);
    const rampMs = Math.min(RAMP_MAX_MS, Math.floor(stageMs / 10));
    const stages = [{ target: RATE, ms: stageMs }];
    for (let k = 1; k < STEPS; k++) {
      const target = RATE + ((MAX_RATE - RATE) * k) / (STEPS - 1);
      stages.push({ target, ms: rampMs }, { target, ms: stageMs - rampMs });
    }
    return { constant: false, startRate: RATE, stages, peak: MAX_RATE };
  }
  // spike: RATE for the first third, a quick jump to RATE * SPIKE_FACTOR held to the end of the second
  // third, a quick drop back to RATE held to the end.
  const thirdMs = Math.floor(DURATION_MS / 3);
  if (thirdMs < 1000) throw new Error(`a spike run needs DURATION of at least 3s, got ${DURATION_MS}ms`);
  const rampMs = Math.min(RAMP_MAX_MS, Math.floor(thirdMs / 10));
  const peak = RATE * SPIKE_FACTOR;
  const stages = [
    { target: RATE, ms: thirdMs },
    { target: peak, ms: rampMs },
    { target: peak, ms: thirdMs - rampMs },
    { target: RATE, ms: rampMs },
    { target: RATE, ms: DURATION_MS - 2 * thirdMs - rampMs },
  ];
  return { constant: false, startRate: RATE, stages, peak };
}

// k6 takes whole iterations per timeUnit: per second when the flow's rates are whole, else per minute.
function perUnit(rates) {
  const whole = rates.every((r) => Math.abs(r - Math.round(r)) < 1e-9 && Math.round(r) >= 1);
  if (whole) return { timeUnit: '1s', values: rates.map((r) => Math.round(r)) };
  return { timeUnit: '1m', values: rates.map((r) => Math.max(1, Math.round(r * 60))) };
}

function vus(flow, peak) {
  const weights = Object.values(FLOWS).reduce((sum, f) => sum + f.share * f.requests, 0);
  const cap = Math.max(2, Math.floor((MAX_VUS * flow.share * flow.requests) / weights));
  const busy = peak * flow.share * flow.requests;
  const preAllocatedVUs = Math.min(cap, Math.max(2, Math.ceil(busy * VU_PREALLOCATED_S)));
  const maxVUs = Math.min(cap, Math.max(preAllocatedVUs, Math.ceil(busy * VU_MAX_S)));
  return { preAllocatedVUs, maxVUs };
}

function scenarios() {
  const plan = schedule();
  const out = {};
  for (const [name, flow] of Object.entries(FLOWS)) {
    const common = { exec: name, ...vus(flow, plan.peak) };
    if (plan.constant) {
      const unit = perUnit([plan.rate * flow.share]);
      out[name] = {
        executor: 'constant-arrival-rate',
        rate: unit.values[0],
        timeUnit: unit.timeUnit,
        duration: `${plan.ms}ms`,
        ...common,
      };
    } else {
      const unit = perUnit([plan.startRate, ...plan.stages.map((s) => s.target)].map((r) => r * flow.share));
      out[name] = {
        executor: 'ramping-arrival-rate',
        startRate: unit.values[0],
        timeUnit: unit.timeUnit,
        stages: plan.stages.map((s, i) => ({ target: unit.values[i + 1], duration: `${s.ms}ms` })),
        ...common,
      };
    }
  }
  return out;
}

// A stress run stops soon after a threshold breaks (evaluated from ABORT_DELAY on); the others run to the end.
function threshold(expression) {
  return PROFILE === 'stress' ? { threshold: expression, abortOnFail: true, delayAbortEval: ABORT_DELAY } : expression;
}

export const options = {
  scenarios: scenarios(),
  thresholds: {
    http_req_duration: [threshold(`p(95)<${P95_MS}`)],
    http_req_failed: [threshold('rate<0.01')],
    checks: [threshold('rate>0.99')],
  },
  tags: { profile: PROFILE },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const TERMS = ['lamp', 'oak', 'kettle', 'steel', 'chair', 'cotton', 'mug', 'bamboo', 'desk', 'glass', 'clock', 'wool'];
const SYNTHETIC = { 'X-Synthetic': '1' };

export function setup() {
  return { ids: inStockProducts(MIN_STOCK) };
}

function pick(list) {
  return list[Math.floor(Math.random() * list.length)];
}

// A GET whose body is not read (browse pages: only the status is checked).
function view(path, name) {
  const res = http.get(`${BASE_URL}${path}`, { headers: SYNTHETIC, tags: { name }, responseType: 'none' });
  check(res, { [`${name} 200`]: (r) => r.status === 200 });
  return res;
}

function post(path, body, name, headers = JSON_HEADERS) {
  return postJson(path, body, { headers, tags: { name } });
}

export function browse(data) {
  const roll = Math.random();
  if (roll < 0.4) {
    if (STOREFRONT) view('/', 'homepage');
    view('/api/products?page=1&limit=20', 'products');
    view('/api/categories', 'categories');
  } else if (roll < 0.8) {
    view(`/api/products?q=${pick(TERMS)}&page=1&limit=20`, 'search');
  } else {
    view(`/api/products/${pick(data.ids)}`, 'product');
  }
}

// A new cart with `items` different products in stock, one of each; its id, or null when a step failed.
function filledCart(ids, items) {
  const created = post('/api/carts', {}, 'create_cart');
  if (!check(created, { 'create_cart 201': (r) => r.status === 201 })) return null;
  const cartId = created.json('id');
  const first = Math.floor(Math.random() * ids.length);
  for (let i = 0; i < items; i++) {
    const productId = ids[(first + i) % ids.length];
    const added = post(`/api/carts/${cartId}/items`, { product_id: productId, quantity: 1 }, 'add_to_cart');
    if (!check(added, { 'add_to_cart 200': (r) => r.status === 200 })) return null;
  }
  return cartId;
}

export function cart(data) {
  const cartId = filledCart(data.ids, 1);
  if (cartId === null) return;
  const res = http.get(`${BASE_URL}/api/carts/${cartId}`, { headers: SYNTHETIC, tags: { name: 'get_cart' } });
  check(res, { 'get_cart 200': (r) => r.status === 200 });
}

export function checkout(data) {
  const cartId = filledCart(data.ids, 1 + Math.floor(Math.random() * 2));
  if (cartId === null) return;
  const headers = { ...JSON_HEADERS, 'Idempotency-Key': crypto.randomUUID() };
  const placed = post('/api/checkout', { cart_id: cartId, email: EMAIL }, 'checkout', headers);
  if (!check(placed, { 'checkout 201': (r) => r.status === 201 })) return;
  const res = http.get(`${BASE_URL}/api/orders/${placed.json('id')}`, { headers: SYNTHETIC, tags: { name: 'order' } });
  check(res, {
    'order 200': (r) => r.status === 200,
    'order synthetic': (r) => r.status === 200 && r.json('synthetic') === true,
  });
}
