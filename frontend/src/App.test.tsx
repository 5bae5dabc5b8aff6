import { fireEvent, render, screen, waitFor, within } from '@testing-library/react';
import { describe, expect, it } from 'vitest';
import { App } from './App';
import { createApiClient } from './lib/api';
import { CART_ID_KEY } from './lib/cartStore';
import { FakeBackend, MemoryStorage } from './test/fakeBackend';

function setup(backend = new FakeBackend(), storage = new MemoryStorage()) {
  render(<App api={createApiClient({ fetch: backend.fetch })} storage={storage} />);
  return { backend, storage };
}

describe('App shopping flow', () => {
  it('adds to cart, changes quantity, checks out and shows the order number', async () => {
    const { backend, storage } = setup();

    const cards = await screen.findAllByTestId('product-card');
    fireEvent.click(within(cards[1]).getByTestId('product-link'));

    const add = await screen.findByTestId('add-to-cart');
    expect(screen.getByTestId('product-name').textContent).toBe('Product 2');
    fireEvent.click(add);
    await waitFor(() => expect(screen.getByTestId('cart-count').textContent).toBe('1'));

    fireEvent.click(screen.getByTestId('cart-link'));
    const line = await screen.findByTestId('cart-line');
    fireEvent.click(within(line).getByTestId('quantity-increase'));
    await waitFor(() => expect(screen.getByTestId('cart-count').textContent).toBe('2'));
    expect(screen.getByTestId('cart-total').textContent).toBe('$20.02');

    fireEvent.click(screen.getByTestId('checkout-link'));
    fireEvent.change(await screen.findByTestId('email-input'), { target: { value: 'buyer@example.com' } });
    fireEvent.click(screen.getByTestId('place-order'));

    expect((await screen.findByTestId('order-number')).textContent).toBe('SO-00000001');
    expect(screen.getByTestId('cart-count').textContent).toBe('0');
    expect(storage.getItem(CART_ID_KEY)).toBeNull();

    const checkout = backend.requests.find((r) => r.url === '/api/checkout')!;
    expect(checkout.headers.get('Idempotency-Key')).toMatch(/^[0-9a-f-]{36}$/);
    expect(checkout.body).toEqual({ cart_id: 'cart1', email: 'buyer@example.com' });
  });

  it('shows the insufficient stock message and removes lines', async () => {
    const { backend } = setup();
    window.location.hash = '#/products/3'; // stock 1
    fireEvent.click(await screen.findByTestId('add-to-cart'));
    await waitFor(() => expect(screen.getByTestId('cart-count').textContent).toBe('1'));
    fireEvent.click(screen.getByTestId('add-to-cart'));
    expect((await screen.findByTestId('error-message')).textContent).toBe('Only 1 of Product 3 in stock');

    fireEvent.click(screen.getByTestId('cart-link'));
    fireEvent.click(within(await screen.findByTestId('cart-line')).getByTestId('remove-item'));
    await waitFor(() => expect(screen.queryByTestId('cart-line')).toBeNull());
    expect(screen.getByTestId('cart-count').textContent).toBe('0');
    expect(backend.requests.at(-1)?.method).toBe('DELETE');
  });

  it('shows the product-not-found error', async () => {
    setup();
    window.location.hash = '#/products/999';
    expect((await screen.findByTestId('error-message')).textContent).toBe('Product 999 not found');
  });
});
