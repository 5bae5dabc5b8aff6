import { ApiError, type ApiClient } from './api';
import type { Cart } from './types';

export const CART_ID_KEY = 'shop.cartId';

type CartApi = Pick<
  ApiClient,
  'createCart' | 'getCart' | 'addCartItem' | 'updateCartItem' | 'removeCartItem'
>;

export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}

export interface CartState {
  cart: Cart | null;
  /** True while a cart request is in flight. */
  loading: boolean;
  error: string | null;
  /** True once the stored cart (if any) has been looked up. */
  ready: boolean;
}

function isNotFound(e: unknown): boolean {
  return e instanceof ApiError && e.status === 404;
}

/** Number of items shown in the header badge. */
export function cartCount(cart: Cart | null): number {
  return cart?.item_count ?? 0;
}

/**
 * Owns the shopper's cart: keeps its id in storage, loads it, and applies changes.
 * A cart the server no longer knows (404) is forgotten; adding an item then
 * transparently starts a new cart. Framework-free; React subscribes to it.
 */
export class CartStore {
  private state: CartState = { cart: null, loading: false, error: null, ready: false };
  private listeners = new Set<() => void>();
  private pending = 0;

  constructor(
    private readonly api: CartApi,
    private readonly storage: KeyValueStorage,
  ) {}

  getState = (): CartState => this.state;

  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  get cartId(): string | null {
    try {
      return this.storage.getItem(CART_ID_KEY);
    } catch {
      return null;
    }
  }

  private setState(patch: Partial<CartState>): void {
    this.state = { ...this.state, ...patch };
    for (const l of this.listeners) l();
  }

  private remember(cart: Cart): void {
    try {
      this.storage.setItem(CART_ID_KEY, cart.id);
    } catch {
      // storage unavailable (private mode): the cart lives for this page only
    }
  }

  private forget(): void {
    try {
      this.storage.removeItem(CART_ID_KEY);
    } catch {
      // ignore
    }
  }

  /** Runs a cart operation with loading/error bookkeeping. */
  private async run(op: () => Promise<Cart | null>): Promise<Cart | null> {
    this.pending += 1;
    this.setState({ loading: true, error: null });
    try {
      const cart = await op();
      if (cart) this.remember(cart);
      this.pending -= 1;
      this.setState({ cart, loading: this.pending > 0 });
      return cart;
    } catch (e) {
      this.pending -= 1;
      const message = e instanceof Error ? e.message : String(e);
      this.setState({ loading: this.pending > 0, error: message });
      throw e;
    }
  }

  /** Loads the stored cart, if any. An unknown/expired cart id is dropped. */
  async load(): Promise<Cart | null> {
    try {
      return await this.loadStored();
    } finally {
      this.setState({ ready: true });
    }
  }

  private loadStored(): Promise<Cart | null> {
    return this.run(async () => {
      const id = this.cartId;
      if (!id) return null;
      try {
        return await this.api.getCart(id);
      } catch (e) {
        if (isNotFound(e)) {
          this.forget();
          return null;
        }
        throw e;
      }
    });
  }

  private async ensureCartId(): Promise<string> {
    const id = this.cartId ?? this.state.cart?.id;
    if (id) return id;
    const cart = await this.api.createCart();
    this.remember(cart);
    return cart.id;
  }

  /** Adds a product, creating a cart first when needed (or when the old one expired). */
  addItem(productId: number, quantity = 1): Promise<Cart | null> {
    return this.run(async () => {
      const id = await this.ensureCartId();
      try {
        return await this.api.addCartItem(id, productId, quantity);
      } catch (e) {
        // A 404 here means either the cart expired or the product does not exist.
        if (!isNotFound(e) || !(await this.cartGone(id))) throw e;
        this.forget();
        const fresh = await this.api.createCart();
        this.remember(fresh);
        return await this.api.addCartItem(fresh.id, productId, quantity);
      }
    });
  }

  /** After a 404 on a cart sub-resource, tells whether the cart itself is gone (vs. the product). */
  private async cartGone(id: string): Promise<boolean> {
    try {
      await this.api.getCart(id);
      return false;
    } catch (e) {
      return isNotFound(e);
    }
  }

  /** Sets a line's quantity; 0 or less removes the line. */
  setQuantity(productId: number, quantity: number): Promise<Cart | null> {
    if (quantity <= 0) return this.removeItem(productId);
    return this.run(() => this.withCart((id) => this.api.updateCartItem(id, productId, quantity)));
  }

  removeItem(productId: number): Promise<Cart | null> {
    return this.run(() => this.withCart((id) => this.api.removeCartItem(id, productId)));
  }

  private async withCart(op: (id: string) => Promise<Cart>): Promise<Cart | null> {
    const id = this.cartId ?? this.state.cart?.id;
    if (!id) return null;
    try {
      return await op(id);
    } catch (e) {
      if (isNotFound(e) && (await this.cartGone(id))) {
        this.forget();
        this.setState({ cart: null });
        throw new ApiError('Your cart has expired. Please add the items again.', 404, 'cart_expired');
      }
      throw e;
    }
  }

  /** Called after a successful checkout: the server deleted the cart; start afresh. */
  clear(): void {
    this.forget();
    this.setState({ cart: null, error: null });
  }

  clearError(): void {
    if (this.state.error) this.setState({ error: null });
  }
}
