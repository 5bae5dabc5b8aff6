import { render, screen, within, fireEvent, waitFor } from '@testing-library/react';
import { describe, expect, it, vi } from 'vitest';
import { createApiClient } from '../lib/api';
import { ProductListPage } from './ProductListPage';

function json(body: unknown, status = 200) {
  return new Response(JSON.stringify(body), { status, headers: { 'Content-Type': 'application/json' } });
}

const products = [
  { id: 1, sku: 'SKU-000001', name: 'Garden Hose', description: '', price_cents: 2499, stock: 3, category: 'garden' },
  { id: 2, sku: 'SKU-000002', name: 'Novel', description: '', price_cents: 1250, stock: 0, category: 'books' },
];

function stubFetch(handler: (url: URL) => Response) {
  const fetch = vi.fn(async (input: RequestInfo | URL) => handler(new URL(String(input), 'http://shop.test')));
  vi.stubGlobal('fetch', fetch);
  return fetch;
}

describe('ProductListPage', () => {
  it('renders the products returned by the API', async () => {
    const fetch = stubFetch((url) =>
      url.pathname === '/api/categories'
        ? json(['books', 'garden'])
        : json({ items: products, page: 1, limit: 20, total: 2 }),
    );
    render(<ProductListPage api={createApiClient()} />);

    expect(screen.getByTestId('loading')).toBeTruthy();
    const cards = await screen.findAllByTestId('product-card');
    expect(cards).toHaveLength(2);
    const first = within(cards[0]);
    expect(first.getByTestId('product-link').textContent).toBe('Garden Hose');
    expect(first.getByTestId('product-link').getAttribute('href')).toBe('#/products/1');
    expect(cards[0].textContent).toContain('$24.99');
    expect(cards[1].textContent).toContain('$12.50');
    expect(cards[1].textContent).toContain('Out of stock');
    expect(screen.queryByTestId('loading')).toBeNull();

    const listCall = fetch.mock.calls.map(([u]) => String(u)).find((u) => u.startsWith('/api/products'));
    expect(listCall).toBe('/api/products?page=1&limit=20');
    expect(await screen.findByRole('option', { name: 'garden' })).toBeTruthy();
  });

  it('puts the search term into the URL and the API query', async () => {
    const fetch = stubFetch((url) =>
      url.pathname === '/api/categories' ? json([]) : json({ items: [], page: 1, limit: 20, total: 0 }),
    );
    render(<ProductListPage api={createApiClient()} />);
    await screen.findByText('No products found.');

    fireEvent.change(screen.getByTestId('search-input'), { target: { value: 'hose' } });
    fireEvent.click(screen.getByTestId('search-submit'));

    await waitFor(() => expect(window.location.hash).toBe('#/?q=hose'));
    await waitFor(() =>
      expect(fetch.mock.calls.map(([u]) => String(u))).toContain('/api/products?q=hose&page=1&limit=20'),
    );
  });

  it('shows the error message from the API', async () => {
    stubFetch((url) =>
      url.pathname === '/api/categories'
        ? json(['books'])
        : json({ error: { code: 'bad_request', message: 'limit must be <= 100', request_id: 'r' } }, 400),
    );
    render(<ProductListPage api={createApiClient()} />);
    const error = await screen.findByTestId('error-message');
    expect(error.textContent).toBe('limit must be <= 100');
    expect(screen.queryAllByTestId('product-card')).toHaveLength(0);
  });

  it('paginates', async () => {
    const fetch = stubFetch((url) =>
      url.pathname === '/api/categories'
        ? json([])
        : json({ items: products, page: Number(url.searchParams.get('page')), limit: 20, total: 45 }),
    );
    render(<ProductListPage api={createApiClient()} />);
    expect((await screen.findByTestId('page-info')).textContent).toBe('Page 1 of 3');
    expect((screen.getByTestId('page-prev') as HTMLButtonElement).disabled).toBe(true);
    fireEvent.click(screen.getByTestId('page-next'));
    await waitFor(() => expect(screen.getByTestId('page-info').textContent).toBe('Page 2 of 3'));
    expect(fetch.mock.calls.map(([u]) => String(u))).toContain('/api/products?page=2&limit=20');
  });
});
