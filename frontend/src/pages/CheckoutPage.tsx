import { useRef, useState, type FormEvent } from 'react';
import { CheckoutAttempt, type ApiClient } from '../lib/api';
import { useCart } from '../lib/cartContext';
import { rememberOrder } from '../lib/orderCache';
import { Link, navigate } from '../lib/router';
import { ErrorMessage, Loading } from '../components/Status';
import { Price } from '../components/Price';

const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/;

export function CheckoutPage({ api }: { api: ApiClient }) {
  const { cart, ready, store } = useCart();
  const attempt = useRef<CheckoutAttempt | null>(null);
  attempt.current ??= new CheckoutAttempt(api);
  const [email, setEmail] = useState('');
  const [submitting, setSubmitting] = useState(false);
  const [error, setError] = useState<string | null>(null);

  const onSubmit = async (e: FormEvent) => {
    e.preventDefault();
    if (submitting || !cart) return;
    const trimmed = email.trim();
    if (!EMAIL_RE.test(trimmed)) {
      setError('Please enter a valid email address.');
      return;
    }
    setSubmitting(true);
    setError(null);
    try {
      const order = await attempt.current!.submit(cart.id, trimmed);
      rememberOrder(order);
      store.clear();
      navigate(`/orders/${order.id}`);
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
      setSubmitting(false);
    }
  };

  if (!ready) return <Loading label="Loading cart…" />;

  if (!cart || cart.items.length === 0) {
    return (
      <section>
        <h1>Checkout</h1>
        <p className="empty">
          Your cart is empty. <Link to="/">Browse products</Link>
        </p>
      </section>
    );
  }

  return (
    <section aria-labelledby="checkout-heading">
      <h1 id="checkout-heading">Checkout</h1>
      <div className="card">
        <ul className="summary-lines">
          {cart.items.map((i) => (
            <li key={i.product_id}>
              <span>
                {i.quantity} × {i.name}
              </span>
              <Price cents={i.line_total_cents} />
            </li>
          ))}
        </ul>
        <p className="summary-total">
          Total <Price cents={cart.total_cents} className="total" testId="checkout-total" />
        </p>
      </div>
      <form className="checkout-form" onSubmit={onSubmit} noValidate>
        <label htmlFor="email">Email</label>
        <input
          id="email"
          type="email"
          autoComplete="email"
          required
          value={email}
          onChange={(e) => setEmail(e.target.value)}
          aria-invalid={error !== null && !EMAIL_RE.test(email.trim())}
          data-testid="email-input"
        />
        <button type="submit" className="primary" disabled={submitting} data-testid="place-order">
          {submitting ? 'Placing order…' : 'Place order'}
        </button>
      </form>
      <ErrorMessage message={error} />
      <p>
        <Link to="/cart">← Back to cart</Link>
      </p>
    </section>
  );
}
