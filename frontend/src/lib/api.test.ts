import { describe, expect, it, vi } from 'vitest';
import { ApiError, buildUrl, CheckoutAttempt, createApiClient, newIdempotencyKey } from './api';

function jsonResponse(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

function mockFetch(...responses: Array<Response | Error>) {
  const fn = vi.fn<typeof fetch>();
  for (const r of responses) {
    if (r instanceof Error) fn.mockRejectedValueOnce(r);
    else fn.mockResolvedValueOnce(r);
  }
  return fn;
}

function headersOf(fn: ReturnType<typeof mockFetch>, call: number): Headers {
  return new Headers(fn.mock.calls[call][1]?.headers);
}

const order = {
  id: 17,
  number: 'SO-00000017',
  email: 'a@b.c',
  status: 'placed',
  total_cents: 3998,
  items: [{ product_id: 1, name: 'Book', price_cents: 1999, quantity: 2 }],
  synthetic: false,
  created_at: '2026-01-01T00:00:00Z',
};

describe('buildUrl', () => {
  it('uses same origin when the base is empty', () => {
    expect(buildUrl('', '/api/products')).toBe('/api/products');
  });

  it('joins a base without doubling slashes', () => {
    expect(buildUrl('https://shop.example/', '/api/categories')).toBe('https://shop.example/api/categories');
    expect(buildUrl('http://localhost:8000', 'api/carts')).toBe('http://localhost:8000/api/carts');
  });

  it('adds query params, skipping empty values, and encodes them', () => {
    expect(buildUrl('', '/api/products', { q: 'red & blue', category: '', page: 2, limit: undefined })).toBe(
      '/api/products?q=red+%26+blue&page=2',
    );
    expect(buildUrl('', '/api/products', { q: '', category: undefined })).toBe('/api/products');
  });
});

describe('createApiClient', () => {
  it('requests products with the base and query params', async () => {
    const fetch = mockFetch(jsonResponse({ items: [], page: 3, limit: 20, total: 0 }));
    const api = createApiClient({ baseUrl: 'http://api.test', fetch });
    const page = await api.listProducts({ q: ' lamp ', category: 'garden', page: 3, limit: 20 });
    expect(page.page).toBe(3);
    expect(fetch).toHaveBeenCalledTimes(1);
    const [url, init] = fetch.mock.calls[0];
    const parsed = new URL(String(url));
    expect(parsed.origin + parsed.pathname).toBe('http://api.test/api/products');
    expect(Object.fromEntries(parsed.searchParams)).toEqual({ q: 'lamp', category: 'garden', page: '3', limit: '20' });
    expect(init?.method).toBe('GET');
  });

  it('sends JSON bodies with the right method and path', async () => {
    const cart = { id: 'abc', items: [], total_cents: 0, item_count: 0 };
    const fetch = mockFetch(jsonResponse(cart), jsonResponse(cart), jsonResponse(cart));
    const api = createApiClient({ fetch });
    await api.addCartItem('abc', 5, 2);
    await api.updateCartItem('abc', 5, 3);
    await api.removeCartItem('abc', 5);
    expect(fetch.mock.calls.map(([u, i]) => [u, i?.method, i?.body])).toEqual([
      ['/api/carts/abc/items', 'POST', JSON.stringify({ product_id: 5, quantity: 2 })],
      ['/api/carts/abc/items/5', 'PATCH', JSON.stringify({ quantity: 3 })],
      ['/api/carts/abc/items/5', 'DELETE', undefined],
    ]);
    expect(headersOf(fetch, 0).get('Content-Type')).toBe('application/json');
  });

  it('turns an error body into an ApiError carrying its message and code', async () => {
    const fetch = mockFetch(
      jsonResponse({ error: { code: 'not_found', message: 'Product 42 not found', request_id: 'r-1' } }, 404),
    );
    const api = createApiClient({ fetch });
    const err = await api.getProduct(42).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect(err).toMatchObject({ message: 'Product 42 not found', status: 404, code: 'not_found', requestId: 'r-1' });
  });

  it('falls back to a generic message for non-JSON error responses', async () => {
    const fetch = mockFetch(new Response('<html>Bad gateway</html>', { status: 502, statusText: 'Bad Gateway' }));
    const api = createApiClient({ fetch });
    await expect(api.listCategories()).rejects.toThrow('Request failed (502 Bad Gateway)');
  });

  it('reports network failures as a retryable ApiError', async () => {
    const fetch = mockFetch(new TypeError('Failed to fetch'));
    const api = createApiClient({ fetch });
    const err = await api.listCategories().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApiError);
    expect((err as ApiError).status).toBe(0);
    expect((err as ApiError).isRetryable).toBe(true);
  });

  it('sends the Idempotency-Key header on checkout', async () => {
    const fetch = mockFetch(jsonResponse(order, 201));
    const api = createApiClient({ fetch });
    await api.checkout('cart1', 'a@b.c', 'key-123');
    const [url, init] = fetch.mock.calls[0];
    expect(url).toBe('/api/checkout');
    expect(init?.method).toBe('POST');
    expect(headersOf(fetch, 0).get('Idempotency-Key')).toBe('key-123');
    expect(JSON.parse(String(init?.body))).toEqual({ cart_id: 'cart1', email: 'a@b.c' });
  });
});

describe('CheckoutAttempt', () => {
  it('generates a key once and reuses it when retrying after a network error', async () => {
    const fetch = mockFetch(new TypeError('Failed to fetch'), jsonResponse(order, 201));
    const api = createApiClient({ fetch });
    const makeKey = vi.fn().mockReturnValueOnce('key-1').mockReturnValueOnce('key-2');
    const attempt = new CheckoutAttempt(api, makeKey);

    await expect(attempt.submit('cart1', 'a@b.c')).rejects.toThrow(/network/i);
    const placed = await attempt.submit('cart1', 'a@b.c');

    expect(placed.number).toBe('SO-00000017');
    expect(headersOf(fetch, 0).get('Idempotency-Key')).toBe('key-1');
    expect(headersOf(fetch, 1).get('Idempotency-Key')).toBe('key-1');
    expect(makeKey).toHaveBeenCalledTimes(1);
  });

  it('reuses the key after a 5xx, but starts a new attempt after success or a 4xx', async () => {
    const fetch = mockFetch(
      jsonResponse({ error: { code: 'internal', message: 'Oops', request_id: 'x' } }, 503),
      jsonResponse(order, 201),
      jsonResponse({ error: { code: 'insufficient_stock', message: 'Only 1 left', request_id: 'y' } }, 409),
      jsonResponse(order, 201),
    );
    const api = createApiClient({ fetch });
    let n = 0;
    const attempt = new CheckoutAttempt(api, () => `key-${++n}`);

    await expect(attempt.submit('c', 'a@b.c')).rejects.toThrow('Oops');
    await attempt.submit('c', 'a@b.c');
    await expect(attempt.submit('c2', 'a@b.c')).rejects.toThrow('Only 1 left');
    await attempt.submit('c2', 'a@b.c');

    const keys = fetch.mock.calls.map((_, i) => headersOf(fetch, i).get('Idempotency-Key'));
    expect(keys).toEqual(['key-1', 'key-1', 'key-2', 'key-3']);
  });

  it('uses a new key when the email changes between tries', async () => {
    const fetch = mockFetch(new TypeError('offline'), jsonResponse(order, 201));
    let n = 0;
    const attempt = new CheckoutAttempt(createApiClient({ fetch }), () => `key-${++n}`);
    await expect(attempt.submit('c', 'old@b.c')).rejects.toThrow();
    await attempt.submit('c', 'new@b.c');
    expect(headersOf(fetch, 1).get('Idempotency-Key')).toBe('key-2');
  });
});

describe('newIdempotencyKey', () => {
  const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

  it('returns distinct v4 UUIDs', () => {
    const a = newIdempotencyKey();
    expect(a).toMatch(UUID_V4);
    expect(newIdempotencyKey()).not.toBe(a);
  });

  it('works without crypto.randomUUID (plain-http, non-localhost pages)', () => {
    const real = globalThis.crypto;
    vi.stubGlobal('crypto', { getRandomValues: (b: Uint8Array<ArrayBuffer>) => real.getRandomValues(b) });
    expect(newIdempotencyKey()).toMatch(UUID_V4);
  });
});
