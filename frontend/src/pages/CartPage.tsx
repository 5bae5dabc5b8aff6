import { useEffect, useState, type KeyboardEvent } from 'react';
import { useCart } from '../lib/cartContext';
import type { CartItem } from '../lib/types';
import { Link } from '../lib/router';
import { ErrorMessage, Loading } from '../components/Status';
import { Price } from '../components/Price';

function CartLine({
  item,
  busy,
  onQuantity,
  onRemove,
}: {
  item: CartItem;
  busy: boolean;
  onQuantity: (q: number) => void;
  onRemove: () => void;
}) {
  const [draft, setDraft] = useState(String(item.quantity));
  useEffect(() => setDraft(String(item.quantity)), [item.quantity]);

  const commit = () => {
    const n = Math.floor(Number(draft));
    if (!Number.isFinite(n) || n < 0 || draft.trim() === '') {
      setDraft(String(item.quantity));
      return;
    }
    if (n !== item.quantity) onQuantity(n);
  };

  const onKeyDown = (e: KeyboardEvent<HTMLInputElement>) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      commit();
    }
  };

  const inputId = `qty-${item.product_id}`;
  return (
    <li className="cart-line" data-testid="cart-line" data-product-id={item.product_id}>
      <div className="cart-line-name">
        <Link to={`/products/${item.product_id}`}>{item.name}</Link>
        <span className="muted small">
          <Price cents={item.price_cents} /> each
        </span>
      </div>
      <div className="qty">
        <button
          type="button"
          aria-label={`Decrease quantity of ${item.name}`}
          onClick={() => onQuantity(item.quantity - 1)}
          disabled={busy}
          data-testid="quantity-decrease"
        >
          −
        </button>
        <label className="sr-only" htmlFor={inputId}>
          Quantity of {item.name}
        </label>
        <input
          id={inputId}
          type="number"
          min={0}
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onBlur={commit}
          onKeyDown={onKeyDown}
          disabled={busy}
          data-testid="cart-line-quantity"
        />
        <button
          type="button"
          aria-label={`Increase quantity of ${item.name}`}
          onClick={() => onQuantity(item.quantity + 1)}
          disabled={busy}
          data-testid="quantity-increase"
        >
          +
        </button>
      </div>
      <Price cents={item.line_total_cents} className="line-total" testId="line-total" />
      <button type="button" className="link-button" onClick={onRemove} disabled={busy} data-testid="remove-item">
        Remove
      </button>
    </li>
  );
}

export function CartPage() {
  const { cart, loading, ready, error, store } = useCart();
  const [actionError, setActionError] = useState<string | null>(null);

  const act = async (op: () => Promise<unknown>) => {
    setActionError(null);
    try {
      await op();
    } catch (e) {
      setActionError(e instanceof Error ? e.message : String(e));
    }
  };

  const items = cart?.items ?? [];

  return (
    <section aria-labelledby="cart-heading">
      <h1 id="cart-heading">Your cart</h1>
      {!ready && <Loading label="Loading cart…" />}
      <ErrorMessage message={actionError ?? (ready ? error : null)} />
      {ready && items.length === 0 && (
        <p className="empty">
          Your cart is empty. <Link to="/">Browse products</Link>
        </p>
      )}
      {items.length > 0 && cart && (
        <>
          <ul className="cart-lines" aria-busy={loading}>
            {items.map((item) => (
              <CartLine
                key={item.product_id}
                item={item}
                busy={loading}
                onQuantity={(q) => act(() => store.setQuantity(item.product_id, q))}
                onRemove={() => act(() => store.removeItem(item.product_id))}
              />
            ))}
          </ul>
          <div className="cart-summary">
            <p>
              {cart.item_count === 1 ? '1 item' : `${cart.item_count} items`} · Total{' '}
              <Price cents={cart.total_cents} className="total" testId="cart-total" />
            </p>
            <Link to="/checkout" className="button primary" data-testid="checkout-link">
              Checkout
            </Link>
          </div>
        </>
      )}
    </section>
  );
}
