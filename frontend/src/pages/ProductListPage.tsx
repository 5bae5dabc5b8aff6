import { useEffect, useState, type FormEvent } from 'react';
import type { ApiClient } from '../lib/api';
import { Link, navigate, toHref, useLocation } from '../lib/router';
import { useAsync } from '../lib/useAsync';
import { ErrorMessage, Loading } from '../components/Status';
import { Price } from '../components/Price';

export const PAGE_SIZE = 20;

function parsePage(raw: string | null): number {
  const n = Number(raw);
  return Number.isInteger(n) && n >= 1 ? n : 1;
}

export function ProductListPage({ api }: { api: ApiClient }) {
  const { query } = useLocation();
  const q = query.get('q') ?? '';
  const category = query.get('category') ?? '';
  const page = parsePage(query.get('page'));

  const [draft, setDraft] = useState(q);
  useEffect(() => setDraft(q), [q]);

  const categories = useAsync((signal) => api.listCategories(signal), [api]);
  const products = useAsync(
    (signal) => api.listProducts({ q, category, page, limit: PAGE_SIZE }, signal),
    [api, q, category, page],
  );

  const go = (next: { q?: string; category?: string; page?: number }) => {
    const params = { q, category, page, ...next };
    navigate(toHref('/', { q: params.q.trim(), category: params.category, page: params.page > 1 ? params.page : undefined }));
  };

  const onSearch = (e: FormEvent) => {
    e.preventDefault();
    go({ q: draft, page: 1 });
  };

  const data = products.data;
  const totalPages = data ? Math.max(1, Math.ceil(data.total / (data.limit || PAGE_SIZE))) : 1;

  return (
    <section aria-labelledby="products-heading">
      <h1 id="products-heading">Products</h1>

      <form className="filters" role="search" onSubmit={onSearch}>
        <label className="sr-only" htmlFor="search-input">
          Search products
        </label>
        <input
          id="search-input"
          type="search"
          placeholder="Search products…"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          data-testid="search-input"
        />
        <button type="submit" data-testid="search-submit">
          Search
        </button>
        <label className="sr-only" htmlFor="category-select">
          Category
        </label>
        <select
          id="category-select"
          value={category}
          onChange={(e) => go({ category: e.target.value, page: 1 })}
          data-testid="category-select"
        >
          <option value="">All categories</option>
          {(categories.data ?? []).map((c) => (
            <option key={c} value={c}>
              {c}
            </option>
          ))}
          {category && categories.data && !categories.data.includes(category) && (
            <option value={category}>{category}</option>
          )}
        </select>
      </form>
      <ErrorMessage message={categories.error && `Could not load categories: ${categories.error}`} />

      <ErrorMessage message={products.error} />
      {products.loading && <Loading label="Loading products…" />}

      {data && !products.error && (
        <>
          <p className="muted" data-testid="result-count">
            {data.total === 1 ? '1 product' : `${data.total} products`}
            {q && <> for “{q}”</>}
            {category && <> in {category}</>}
          </p>
          {data.items.length === 0 ? (
            <p className="empty">No products found.</p>
          ) : (
            <ul className="product-grid" aria-busy={products.loading}>
              {data.items.map((p) => (
                <li key={p.id} className="card product-card" data-testid="product-card">
                  <Link to={`/products/${p.id}`} className="product-link" data-testid="product-link">
                    {p.name}
                  </Link>
                  <span className="muted small">{p.category}</span>
                  <Price cents={p.price_cents} />
                  <span className={p.stock > 0 ? 'stock' : 'stock out'}>
                    {p.stock > 0 ? 'In stock' : 'Out of stock'}
                  </span>
                </li>
              ))}
            </ul>
          )}
          {totalPages > 1 && (
            <nav className="pagination" aria-label="Pagination">
              <button
                type="button"
                onClick={() => go({ page: page - 1 })}
                disabled={page <= 1 || products.loading}
                data-testid="page-prev"
              >
                ← Previous
              </button>
              <span data-testid="page-info">
                Page {data.page} of {totalPages}
              </span>
              <button
                type="button"
                onClick={() => go({ page: page + 1 })}
                disabled={page >= totalPages || products.loading}
                data-testid="page-next"
              >
                Next →
              </button>
            </nav>
          )}
        </>
      )}
    </section>
  );
}
