import type { ApiClient } from '../lib/api';
import { formatDateTime } from '../lib/format';
import { cachedOrder } from '../lib/orderCache';
import { Link } from '../lib/router';
import { useAsync } from '../lib/useAsync';
import { ErrorMessage, Loading } from '../components/Status';
import { Price } from '../components/Price';

export function OrderPage({ api, orderId }: { api: ApiClient; orderId: string }) {
  const result = useAsync(
    (signal) => {
      const cached = cachedOrder(orderId);
      return cached ? Promise.resolve(cached) : api.getOrder(orderId, signal);
    },
    [api, orderId],
  );
  const order = result.data;

  return (
    <section aria-labelledby="order-heading">
      {result.loading && <Loading label="Loading order…" />}
      <ErrorMessage message={result.error} />
      {order && !result.loading && (
        <div className="card confirmation">
          <h1 id="order-heading">Thank you for your order!</h1>
          <p>
            Order number <strong data-testid="order-number">{order.number}</strong>
          </p>
          <p className="muted small">
            Placed {formatDateTime(order.created_at)} · Status: {order.status} · {order.email}
          </p>
          <ul className="summary-lines">
            {order.items.map((i) => (
              <li key={i.product_id}>
                <span>
                  {i.quantity} × {i.name}
                </span>
                <Price cents={i.price_cents * i.quantity} />
              </li>
            ))}
          </ul>
          <p className="summary-total">
            Total <Price cents={order.total_cents} className="total" testId="order-total" />
          </p>
          <p>
            <Link to="/">Continue shopping</Link>
          </p>
        </div>
      )}
    </section>
  );
}
