import { createContext, useContext, useSyncExternalStore, type ReactNode } from 'react';
import type { CartState, CartStore } from './cartStore';

const CartContext = createContext<CartStore | null>(null);

export function CartProvider({ store, children }: { store: CartStore; children: ReactNode }) {
  return <CartContext.Provider value={store}>{children}</CartContext.Provider>;
}

export function useCartStore(): CartStore {
  const store = useContext(CartContext);
  if (!store) throw new Error('useCart must be used inside <CartProvider>');
  return store;
}

export function useCart(): CartState & { store: CartStore } {
  const store = useCartStore();
  const state = useSyncExternalStore(store.subscribe, store.getState, store.getState);
  return { ...state, store };
}
