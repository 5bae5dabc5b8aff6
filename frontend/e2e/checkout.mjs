// End-to-end: a shopper searches, adds a product to the cart, checks out and sees the order number.
// Drives Debian's Chromium headless through playwright-core against a served storefront.
//   node e2e/checkout.mjs BASE_URL SCREENSHOT_DIR
// Prints one JSON line: {"order_number": "...", "product": "...", "csp_violations": [...]}
// (csp_violations: what Chromium refused under the storefront's Content-Security-Policy, as it logs it).
import { launchChromium, scriptArguments, watchCspViolations } from './browser.mjs';

const [baseUrl, shots] = scriptArguments('checkout.mjs');
const browser = await launchChromium();
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(15000);
  const cspViolations = watchCspViolations(page);
  const home = await page.goto(baseUrl);
  if (!home.headers()['content-security-policy']) throw new Error('the storefront sent no Content-Security-Policy');
  await page.getByTestId('search-input').fill('lamp');
  await page.getByTestId('search-submit').click();
  // the first page of all products is listed already: wait until the list is the search's answer
  // (times out, failing the check, if the search never narrows the list)
  await page.waitForFunction(() => {
    const cards = [...document.querySelectorAll('[data-testid="product-card"]')];
    return cards.length > 0 && cards.every((c) => c.innerText.toLowerCase().includes('lamp'));
  });
  const names = await page.getByTestId('product-card').allInnerTexts();
  if (!names.every((n) => n.toLowerCase().includes('lamp'))) throw new Error(`search shows non-matching products: ${names}`);
  await page.screenshot({ path: `${shots}/1-search.png` });
  await page.getByTestId('product-link').first().click();
  const product = await page.getByTestId('product-name').innerText();
  await page.getByTestId('add-to-cart').click();
  await page.getByTestId('cart-count').filter({ hasText: '1' }).waitFor();
  await page.getByTestId('cart-link').click();
  await page.getByTestId('cart-line').first().waitFor();
  await page.screenshot({ path: `${shots}/2-cart.png` });
  await page.getByTestId('checkout-link').click();
  await page.getByTestId('email-input').fill('e2e@example.com');
  await page.getByTestId('place-order').click();
  const number = await page.getByTestId('order-number').innerText();
  await page.screenshot({ path: `${shots}/3-order.png` });
  console.log(JSON.stringify({ order_number: number, product, csp_violations: cspViolations }));
} finally {
  await browser.close();
}
