import { beforeEach, describe, expect, it, vi } from 'vitest';
import { createApiClient } from './api';
import { CART_ID_KEY, CartStore, cartCount } from './cartStore';
import { FakeBackend, MemoryStorage } from '../test/fakeBackend';

describe('CartStore', () => {
  let backend: FakeBackend;
  let storage: MemoryStorage;
  let store: CartStore;

  beforeEach(() => {
    backend = new FakeBackend();
    storage = new MemoryStorage();
    store = new CartStore(createApiClient({ fetch: backend.fetch }), storage);
  });

  it('does not create a cart just by loading without a stored id', async () => {
    await store.load();
    expect(store.getState()).toMatchObject({ cart: null, ready: true, loading: false });
    expect(backend.requests).toHaveLength(0);
  });

  it('creates a cart on first add and remembers its id', async () => {
    const cart = await store.addItem(1, 2);
    expect(cart?.item_count).toBe(2);
    expect(storage.getItem(CART_ID_KEY)).toBe(cart?.id);
    expect(cartCount(store.getState().cart)).toBe(2);

    await store.addItem(1, 1);
    expect(store.getState().cart?.items).toEqual([
      expect.objectContaining({ product_id: 1, quantity: 3, line_total_cents: 3000 }),
    ]);
    expect(backend.carts.size).toBe(1);
  });

  it('reloads the stored cart on start', async () => {
    await store.addItem(2, 1);
    const again = new CartStore(createApiClient({ fetch: backend.fetch }), storage);
    await again.load();
    expect(again.getState().cart?.items[0].product_id).toBe(2);
  });

  it('forgets an unknown stored cart and starts a new one on the next add', async () => {
    storage.setItem(CART_ID_KEY, 'expired');
    await store.load();
    expect(store.getState().cart).toBeNull();
    expect(store.getState().error).toBeNull();
    expect(storage.getItem(CART_ID_KEY)).toBeNull();

    const cart = await store.addItem(4, 1);
    expect(cart?.id).not.toBe('expired');
    expect(storage.getItem(CART_ID_KEY)).toBe(cart?.id);
  });

  it('replaces a cart that expires between page load and add', async () => {
    const first = await store.addItem(1, 1);
    backend.carts.delete(first!.id);
    const second = await store.addItem(5, 1);
    expect(second?.id).not.toBe(first?.id);
    expect(second?.items.map((i) => i.product_id)).toEqual([5]);
  });

  it('does not replace the cart when the product itself is missing', async () => {
    const first = await store.addItem(1, 1);
    await expect(store.addItem(999, 1)).rejects.toThrow('Product 999 not found');
    expect(storage.getItem(CART_ID_KEY)).toBe(first?.id);
    expect(store.getState().error).toBe('Product 999 not found');
    expect(store.getState().cart?.item_count).toBe(1);
  });

  it('surfaces insufficient stock errors and keeps the cart unchanged', async () => {
    await store.addItem(3, 1); // product 3 has stock 1
    await expect(store.addItem(3, 1)).rejects.toMatchObject({ code: 'insufficient_stock', status: 409 });
    expect(store.getState().cart?.item_count).toBe(1);
  });

  it('changes quantity, and removes the line at zero', async () => {
    await store.addItem(1, 1);
    await store.addItem(2, 1);
    await store.setQuantity(1, 4);
    expect(store.getState().cart?.item_count).toBe(5);
    await store.setQuantity(1, 0);
    expect(store.getState().cart?.items.map((i) => i.product_id)).toEqual([2]);
    expect(backend.requests.at(-1)?.method).toBe('DELETE');
    await store.removeItem(2);
    expect(cartCount(store.getState().cart)).toBe(0);
  });

  it('notifies subscribers and tracks loading', async () => {
    const seen: boolean[] = [];
    store.subscribe(() => seen.push(store.getState().loading));
    await store.addItem(1, 1);
    expect(seen[0]).toBe(true);
    expect(seen.at(-1)).toBe(false);
  });

  it('clear() drops the cart after checkout', async () => {
    await store.addItem(1, 1);
    const listener = vi.fn();
    store.subscribe(listener);
    store.clear();
    expect(store.getState().cart).toBeNull();
    expect(storage.getItem(CART_ID_KEY)).toBeNull();
    expect(listener).toHaveBeenCalled();
  });
});
