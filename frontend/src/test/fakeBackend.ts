import type { Cart, Order, Product } from '../lib/types';

/** An in-memory imitation of the shop API, served through a fetch function. */
export class FakeBackend {
  products: Product[];
  carts = new Map<string, Map<number, number>>();
  orders = new Map<number, Order>();
  idempotency = new Map<string, Order>();
  requests: Array<{ method: string; url: string; headers: Headers; body: unknown }> = [];
  private nextCart = 1;
  private nextOrder = 1;

  constructor(products?: Product[]) {
    this.products =
      products ??
      Array.from({ length: 45 }, (_, i) => ({
        id: i + 1,
        sku: `SKU-${String(i + 1).padStart(6, '0')}`,
        name: `Product ${i + 1}`,
        description: `Description ${i + 1}`,
        price_cents: 1000 + i,
        stock: i === 2 ? 1 : 10,
        category: i % 2 === 0 ? 'books' : 'garden',
      }));
  }

  private json(body: unknown, status = 200): Response {
    return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
  }

  private error(status: number, code: string, message: string): Response {
    return this.json({ error: { code, message, request_id: 'req-test' } }, status);
  }

  private cartBody(id: string): Cart {
    const lines = this.carts.get(id)!;
    const items = [...lines].map(([productId, quantity]) => {
      const p = this.products.find((x) => x.id === productId)!;
      return { product_id: p.id, name: p.name, price_cents: p.price_cents, quantity, line_total_cents: p.price_cents * quantity };
    });
    return {
      id,
      items,
      total_cents: items.reduce((s, i) => s + i.line_total_cents, 0),
      item_count: items.reduce((s, i) => s + i.quantity, 0),
    };
  }

  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const url = new URL(String(input), 'http://shop.test');
    const method = init?.method ?? 'GET';
    const body: unknown = init?.body ? JSON.parse(String(init.body)) : undefined;
    const headers = new Headers(init?.headers);
    this.requests.push({ method, url: url.pathname + url.search, headers, body });
    const parts = url.pathname.split('/').filter(Boolean); // ["api", ...]
    const b = body as Record<string, unknown> | undefined;

    if (parts[1] === 'products' && parts.length === 2 && method === 'GET') {
      const q = (url.searchParams.get('q') ?? '').toLowerCase();
      const category = url.searchParams.get('category') ?? '';
      const page = Number(url.searchParams.get('page') ?? 1);
      const limit = Number(url.searchParams.get('limit') ?? 20);
      const all = this.products.filter(
        (p) => (!q || p.name.toLowerCase().includes(q)) && (!category || p.category === category),
      );
      return this.json({ items: all.slice((page - 1) * limit, page * limit), page, limit, total: all.length });
    }
    if (parts[1] === 'products' && parts.length === 3) {
      const p = this.products.find((x) => x.id === Number(parts[2]));
      return p ? this.json(p) : this.error(404, 'not_found', `Product ${parts[2]} not found`);
    }
    if (parts[1] === 'categories') return this.json([...new Set(this.products.map((p) => p.category))].sort());
    if (parts[1] === 'carts' && parts.length === 2 && method === 'POST') {
      const id = `cart${this.nextCart++}`;
      this.carts.set(id, new Map());
      return this.json(this.cartBody(id), 201);
    }
    if (parts[1] === 'carts') {
      const id = parts[2];
      const lines = this.carts.get(id);
      if (!lines) return this.error(404, 'not_found', `Cart ${id} not found`);
      if (parts.length === 3 && method === 'GET') return this.json(this.cartBody(id));
      if (parts[3] === 'items') {
        const productId = parts.length === 5 ? Number(parts[4]) : Number(b?.product_id);
        const p = this.products.find((x) => x.id === productId);
        if (!p) return this.error(404, 'not_found', `Product ${productId} not found`);
        if (method === 'DELETE') {
          lines.delete(productId);
          return this.json(this.cartBody(id));
        }
        const qty = method === 'POST' ? (lines.get(productId) ?? 0) + Number(b?.quantity) : Number(b?.quantity);
        if (qty > p.stock) return this.error(409, 'insufficient_stock', `Only ${p.stock} of ${p.name} in stock`);
        lines.set(productId, qty);
        return this.json(this.cartBody(id));
      }
    }
    if (parts[1] === 'checkout' && method === 'POST') {
      const key = headers.get('Idempotency-Key');
      if (!key) return this.error(400, 'missing_idempotency_key', 'Idempotency-Key header is required');
      const previous = this.idempotency.get(key);
      if (previous) return this.json(previous, 201);
      const cartId = String(b?.cart_id);
      if (!this.carts.has(cartId)) return this.error(404, 'not_found', `Cart ${cartId} not found`);
      const cart = this.cartBody(cartId);
      const id = this.nextOrder++;
      const order: Order = {
        id,
        number: `SO-${String(id).padStart(8, '0')}`,
        email: String(b?.email),
        status: 'placed',
        total_cents: cart.total_cents,
        items: cart.items.map(({ product_id, name, price_cents, quantity }) => ({ product_id, name, price_cents, quantity })),
        synthetic: false,
        created_at: '2026-01-01T12:00:00Z',
      };
      this.carts.delete(cartId);
      this.orders.set(id, order);
      this.idempotency.set(key, order);
      return this.json(order, 201);
    }
    if (parts[1] === 'orders' && parts.length === 3) {
      const o = this.orders.get(Number(parts[2]));
      return o ? this.json(o) : this.error(404, 'not_found', `Order ${parts[2]} not found`);
    }
    return this.error(404, 'not_found', `No route ${method} ${url.pathname}`);
  };
}

export class MemoryStorage {
  data = new Map<string, string>();
  getItem(k: string) {
    return this.data.get(k) ?? null;
  }
  setItem(k: string, v: string) {
    this.data.set(k, v);
  }
  removeItem(k: string) {
    this.data.delete(k);
  }
}
