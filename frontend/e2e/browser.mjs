// What the e2e scripts share: their command line (BASE_URL SCREENSHOT_DIR), Debian's Chromium launched headless
// through playwright-core, and the Content-Security-Policy refusals Chromium logs on a page.
import { chromium } from 'playwright-core';

// [baseUrl, screenshotDir] of `node e2e/<script> BASE_URL SCREENSHOT_DIR`; exits 2 with the usage otherwise.
export function scriptArguments(script) {
  const [baseUrl, shots] = process.argv.slice(2);
  if (!baseUrl || !shots) {
    console.error(`usage: node e2e/${script} BASE_URL SCREENSHOT_DIR`);
    process.exit(2);
  }
  return [baseUrl, shots];
}

// Chromium ($CHROMIUM or /usr/bin/chromium), quiet: no sandbox (root), no GPU, no background traffic.
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-quic'],
  });
}

// A list that fills with every CSP refusal Chromium logs on `page` (its console text).
export function watchCspViolations(page) {
  const violations = [];
  page.on('console', (msg) => {
    if (msg.text().includes('Content Security Policy')) violations.push(msg.text());
  });
  return violations;
}
