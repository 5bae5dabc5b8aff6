import type { Order } from './types';

/** Orders placed in this page session, so the confirmation page can show them without a refetch. */
const orders = new Map<string, Order>();

export function rememberOrder(order: Order): void {
  orders.set(String(order.id), order);
}

export function cachedOrder(id: string): Order | undefined {
  return orders.get(id);
}
