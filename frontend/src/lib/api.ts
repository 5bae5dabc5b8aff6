import type { Cart, Order, Product, ProductPage, ProductQuery } from './types';

/** Error raised for every failed API call; `message` is what the user sees. */
export class ApiError extends Error {
  readonly status: number;
  readonly code: string;
  readonly requestId: string | undefined;

  constructor(message: string, status: number, code: string, requestId?: string) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    this.requestId = requestId;
  }

  /** True when the server never gave a definitive answer (network failure or 5xx). */
  get isRetryable(): boolean {
    return this.status === 0 || this.status >= 500;
  }
}

export type QueryValue = string | number | boolean | null | undefined;

/** Joins base + path and appends the non-empty query params. */
export function buildUrl(base: string, path: string, params?: Record<string, QueryValue>): string {
  const cleanBase = base.replace(/\/+$/, '');
  const cleanPath = path.startsWith('/') ? path : `/${path}`;
  let url = cleanBase + cleanPath;
  if (params) {
    const search = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) {
      if (value === undefined || value === null || value === '') continue;
      search.append(key, String(value));
    }
    const qs = search.toString();
    if (qs) url += `?${qs}`;
  }
  return url;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null;
}

async function errorFromResponse(res: Response): Promise<ApiError> {
  let body: unknown = undefined;
  try {
    body = await res.json();
  } catch {
    // not JSON (e.g. a proxy's HTML error page)
  }
  if (isRecord(body) && isRecord(body.error)) {
    const err = body.error;
    const message =
      typeof err.message === 'string' && err.message ? err.message : `Request failed (${res.status})`;
    const code = typeof err.code === 'string' ? err.code : 'http_error';
    const requestId = typeof err.request_id === 'string' ? err.request_id : undefined;
    return new ApiError(message, res.status, code, requestId);
  }
  const text = res.statusText ? ` ${res.statusText}` : '';
  return new ApiError(`Request failed (${res.status}${text})`, res.status, 'http_error');
}

export interface ApiClientOptions {
  /** Prefix for every request, e.g. "" (same origin) or "https://shop.example". */
  baseUrl?: string;
  fetch?: typeof fetch;
}

interface RequestOptions {
  method?: string;
  params?: Record<string, QueryValue>;
  body?: unknown;
  headers?: Record<string, string>;
  signal?: AbortSignal;
}

export function createApiClient(options: ApiClientOptions = {}) {
  const baseUrl = options.baseUrl ?? '';
  // Resolve fetch lazily so tests can stub the global after the client is created.
  const doFetch: typeof fetch = (input, init) => (options.fetch ?? globalThis.fetch)(input, init);

  async function request<T>(path: string, opts: RequestOptions = {}): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json', ...opts.headers };
    const init: RequestInit = { method: opts.method ?? 'GET', headers, signal: opts.signal };
    if (opts.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(opts.body);
    }

    let res: Response;
    try {
      res = await doFetch(buildUrl(baseUrl, path, opts.params), init);
    } catch (e) {
      if (e instanceof DOMException && e.name === 'AbortError') throw e;
      throw new ApiError('Network error: could not reach the server. Please try again.', 0, 'network_error');
    }

    if (!res.ok) throw await errorFromResponse(res);
    if (res.status === 204) return undefined as T;
    try {
      return (await res.json()) as T;
    } catch {
      throw new ApiError('The server sent an invalid response.', res.status, 'invalid_response');
    }
  }

  const id = (value: string | number) => encodeURIComponent(String(value));

  return {
    listProducts(query: ProductQuery = {}, signal?: AbortSignal) {
      return request<ProductPage>('/api/products', {
        params: { q: query.q?.trim(), category: query.category, page: query.page, limit: query.limit },
        signal,
      });
    },
    getProduct(productId: number | string, signal?: AbortSignal) {
      return request<Product>(`/api/products/${id(productId)}`, { signal });
    },
    listCategories(signal?: AbortSignal) {
      return request<string[]>('/api/categories', { signal });
    },
    createCart() {
      return request<Cart>('/api/carts', { method: 'POST' });
    },
    getCart(cartId: string, signal?: AbortSignal) {
      return request<Cart>(`/api/carts/${id(cartId)}`, { signal });
    },
    addCartItem(cartId: string, productId: number, quantity: number) {
      return request<Cart>(`/api/carts/${id(cartId)}/items`, {
        method: 'POST',
        body: { product_id: productId, quantity },
      });
    },
    updateCartItem(cartId: string, productId: number, quantity: number) {
      return request<Cart>(`/api/carts/${id(cartId)}/items/${id(productId)}`, {
        method: 'PATCH',
        body: { quantity },
      });
    },
    removeCartItem(cartId: string, productId: number) {
      return request<Cart>(`/api/carts/${id(cartId)}/items/${id(productId)}`, { method: 'DELETE' });
    },
    checkout(cartId: string, email: string, idempotencyKey: string) {
      return request<Order>('/api/checkout', {
        method: 'POST',
        headers: { 'Idempotency-Key': idempotencyKey },
        body: { cart_id: cartId, email },
      });
    },
    getOrder(orderId: number | string, signal?: AbortSignal) {
      return request<Order>(`/api/orders/${id(orderId)}`, { signal });
    },
  };
}

export type ApiClient = ReturnType<typeof createApiClient>;

/** RFC 4122 v4 UUID. crypto.randomUUID only exists in secure contexts (https/localhost). */
export function newIdempotencyKey(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  bytes[6] = (bytes[6] & 0x0f) | 0x40;
  bytes[8] = (bytes[8] & 0x3f) | 0x80;
  const hex = Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

/**
 * One checkout attempt. The Idempotency-Key is generated on the first submit and
 * reused for retries of the same cart/email after a network error or 5xx, so a
 * request that reached the server but whose answer got lost cannot create a second
 * order. A definitive 4xx answer or a change of cart/email starts a new attempt.
 */
export class CheckoutAttempt {
  private key: string | null = null;
  private signature: string | null = null;

  constructor(
    private readonly api: Pick<ApiClient, 'checkout'>,
    private readonly makeKey: () => string = newIdempotencyKey,
  ) {}

  /** The key the next submit would use, if an attempt is in progress. */
  get currentKey(): string | null {
    return this.key;
  }

  async submit(cartId: string, email: string): Promise<Order> {
    const signature = JSON.stringify([cartId, email]);
    if (this.key === null || this.signature !== signature) {
      this.key = this.makeKey();
      this.signature = signature;
    }
    try {
      const order = await this.api.checkout(cartId, email, this.key);
      this.reset();
      return order;
    } catch (e) {
      if (!(e instanceof ApiError) || !e.isRetryable) this.reset();
      throw e;
    }
  }

  reset(): void {
    this.key = null;
    this.signature = null;
  }
}

const envBase: unknown = import.meta.env.VITE_API_BASE;
export const API_BASE = typeof envBase === 'string' ? envBase : '';

export const api = createApiClient({ baseUrl: API_BASE });
