import { describe, expect, it } from 'vitest';
import { formatPrice } from './format';

describe('formatPrice', () => {
  it.each([
    [0, '$0.00'],
    [5, '$0.05'],
    [99, '$0.99'],
    [100, '$1.00'],
    [1999, '$19.99'],
    [123456, '$1,234.56'],
    [100000000, '$1,000,000.00'],
    [-250, '-$2.50'],
  ])('formats %i cents as %s', (cents, expected) => {
    expect(formatPrice(cents)).toBe(expected);
  });

  it('has no floating point drift', () => {
    // 0.1 + 0.2 style errors would show up as e.g. $10.02999
    expect(formatPrice(1003)).toBe('$10.03');
    expect(formatPrice(29 + 1)).toBe('$0.30');
  });

  it('handles non-finite input', () => {
    expect(formatPrice(Number.NaN)).toBe('—');
  });
});
