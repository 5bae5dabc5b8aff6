import { useCart } from '../lib/cartContext';
import { cartCount } from '../lib/cartStore';
import { Link } from '../lib/router';

export function Header() {
  const { cart } = useCart();
  const count = cartCount(cart);
  return (
    <header className="site-header">
      <nav className="container nav" aria-label="Main">
        <Link to="/" className="brand">
          Shop
        </Link>
        <Link to="/cart" className="cart-link" data-testid="cart-link" aria-label={`Cart, ${count} items`}>
          Cart <span className="badge" data-testid="cart-count">{count}</span>
        </Link>
      </nav>
    </header>
  );
}
