import { useEffect, useState } from 'react';
import type { ApiClient } from './lib/api';
import { CartProvider } from './lib/cartContext';
import { CartStore, type KeyValueStorage } from './lib/cartStore';
import { Link, matchPath, useLocation } from './lib/router';
import { Header } from './components/Header';
import { ProductListPage } from './pages/ProductListPage';
import { ProductPage } from './pages/ProductPage';
import { CartPage } from './pages/CartPage';
import { CheckoutPage } from './pages/CheckoutPage';
import { OrderPage } from './pages/OrderPage';

function Routes({ api }: { api: ApiClient }) {
  const { path } = useLocation();

  useEffect(() => {
    window.scrollTo?.(0, 0);
  }, [path]);

  if (path === '/') return <ProductListPage api={api} />;
  if (path === '/cart') return <CartPage />;
  if (path === '/checkout') return <CheckoutPage api={api} />;
  const product = matchPath('/products/:id', path);
  if (product) return <ProductPage key={product.id} api={api} productId={product.id} />;
  const order = matchPath('/orders/:id', path);
  if (order) return <OrderPage api={api} orderId={order.id} />;
  return (
    <section>
      <h1>Page not found</h1>
      <p>
        <Link to="/">Go to the shop</Link>
      </p>
    </section>
  );
}

export function App({ api, storage }: { api: ApiClient; storage: KeyValueStorage }) {
  const [store] = useState(() => new CartStore(api, storage));

  useEffect(() => {
    store.load().catch(() => {
      // surfaced through the store's error state on the cart page
    });
  }, [store]);

  return (
    <CartProvider store={store}>
      <Header />
      <main className="container">
        <Routes api={api} />
      </main>
    </CartProvider>
  );
}
