import { cleanup } from '@testing-library/react';
import { afterEach } from 'vitest';

afterEach(() => {
  cleanup();
  window.location.hash = '';
  window.localStorage.clear();
});

// jsdom does not implement scrolling; the router scrolls to the top on navigation.
window.scrollTo = () => {};
