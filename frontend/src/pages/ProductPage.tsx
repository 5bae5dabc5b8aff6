import { useState, type FormEvent } from 'react';
import type { ApiClient } from '../lib/api';
import { useCart } from '../lib/cartContext';
import { Link } from '../lib/router';
import { useAsync } from '../lib/useAsync';
import { ErrorMessage, Loading } from '../components/Status';
import { Price } from '../components/Price';

export function ProductPage({ api, productId }: { api: ApiClient; productId: string }) {
  const { store } = useCart();
  const product = useAsync((signal) => api.getProduct(productId, signal), [api, productId]);
  const [quantity, setQuantity] = useState(1);
  const [adding, setAdding] = useState(false);
  const [addError, setAddError] = useState<string | null>(null);
  const [added, setAdded] = useState<string | null>(null);

  const p = product.data;

  const onAdd = async (e: FormEvent) => {
    e.preventDefault();
    if (!p || adding) return;
    setAdding(true);
    setAddError(null);
    setAdded(null);
    try {
      await store.addItem(p.id, quantity);
      setAdded(quantity === 1 ? `Added ${p.name} to your cart.` : `Added ${quantity} × ${p.name} to your cart.`);
    } catch (err) {
      setAddError(err instanceof Error ? err.message : String(err));
    } finally {
      setAdding(false);
    }
  };

  return (
    <section>
      <p>
        <Link to="/">← Back to products</Link>
      </p>
      {product.loading && <Loading label="Loading product…" />}
      <ErrorMessage message={product.error} />
      {p && !product.loading && (
        <article className="card product-detail" data-testid="product-detail">
          <h1 data-testid="product-name">{p.name}</h1>
          <p className="muted small">
            {p.category} · SKU {p.sku}
          </p>
          <p className="price-large">
            <Price cents={p.price_cents} testId="product-price" />
          </p>
          <p className="description">{p.description}</p>
          <p className={p.stock > 0 ? 'stock' : 'stock out'} data-testid="product-stock">
            {p.stock > 0 ? `${p.stock} in stock` : 'Out of stock'}
          </p>
          <form className="add-form" onSubmit={onAdd}>
            <label htmlFor="quantity">Quantity</label>
            <input
              id="quantity"
              type="number"
              min={1}
              max={Math.max(1, p.stock)}
              value={quantity}
              onChange={(e) => setQuantity(Math.max(1, Math.floor(Number(e.target.value)) || 1))}
              data-testid="quantity-input"
            />
            <button type="submit" className="primary" disabled={adding || p.stock <= 0} data-testid="add-to-cart">
              {adding ? 'Adding…' : 'Add to cart'}
            </button>
          </form>
          <ErrorMessage message={addError} />
          {added && (
            <p className="success" role="status" data-testid="added-message">
              {added} <Link to="/cart">View cart</Link>
            </p>
          )}
        </article>
      )}
    </section>
  );
}
