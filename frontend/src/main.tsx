import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { App } from './App';
import { api } from './lib/api';
import type { KeyValueStorage } from './lib/cartStore';
import './styles.css';

function browserStorage(): KeyValueStorage {
  try {
    const probe = '__shop_probe__';
    window.localStorage.setItem(probe, probe);
    window.localStorage.removeItem(probe);
    return window.localStorage;
  } catch {
    const mem = new Map<string, string>();
    return {
      getItem: (k) => mem.get(k) ?? null,
      setItem: (k, v) => void mem.set(k, v),
      removeItem: (k) => void mem.delete(k),
    };
  }
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <App api={api} storage={browserStorage()} />
  </StrictMode>,
);
