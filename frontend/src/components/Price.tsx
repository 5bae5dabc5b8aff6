import { formatPrice } from '../lib/format';

export function Price({ cents, className, testId }: { cents: number; className?: string; testId?: string }) {
  return (
    <span className={className ? `price ${className}` : 'price'} data-testid={testId}>
      {formatPrice(cents)}
    </span>
  );
}
