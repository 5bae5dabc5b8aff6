/**
 * Formats an integer amount of cents as dollars, e.g. 123456 -> "$1,234.56".
 * Uses integer arithmetic only, so there are no floating-point rounding errors.
 */
export function formatPrice(cents: number, symbol = '$'): string {
  if (!Number.isFinite(cents)) return '—';
  const whole = Math.round(cents);
  const sign = whole < 0 ? '-' : '';
  const abs = Math.abs(whole);
  const dollars = Math.floor(abs / 100);
  const rest = abs % 100;
  const grouped = String(dollars).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return `${sign}${symbol}${grouped}.${String(rest).padStart(2, '0')}`;
}

export function formatDateTime(iso: string): string {
  const d = new Date(iso);
  return Number.isNaN(d.getTime()) ? iso : d.toLocaleString();
}
