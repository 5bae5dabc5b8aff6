// The API's documentation pages (Swagger UI at /api/docs, ReDoc at /api/redoc) in headless Chromium.
// Drives Debian's Chromium through playwright-core against an environment's URL (a router).
//   node e2e/api-docs.mjs BASE_URL SCREENSHOT_DIR
// Prints one JSON line: {"swagger_operations": N, "swagger_servers": [...], "redoc_operations": N,
// "csp_violations": [...], "failed": [...], "errors": [...]} (failed: requests that failed or answered >= 400;
// errors: uncaught page errors).
import { launchChromium, scriptArguments, watchCspViolations } from './browser.mjs';

const [baseUrl, shots] = scriptArguments('api-docs.mjs');
const browser = await launchChromium();
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 1600 } });
  page.setDefaultTimeout(20000);
  const cspViolations = watchCspViolations(page);
  const failed = [];
  const errors = [];
  page.on('requestfailed', (req) => failed.push(`${req.url()}: ${req.failure()?.errorText}`));
  page.on('response', (res) => {
    if (res.status() >= 400) failed.push(`${res.url()}: ${res.status()}`);
  });
  page.on('pageerror', (err) => errors.push(String(err)));

  const docs = await page.goto(`${baseUrl}/api/docs`);
  if (!docs.headers()['content-security-policy']) throw new Error('/api/docs sent no Content-Security-Policy');
  await page.locator('.opblock').first().waitFor();
  const swaggerOperations = await page.locator('.opblock').count();
  const swaggerServers = await page.locator('.servers select option').allInnerTexts();
  await page.screenshot({ path: `${shots}/swagger-ui.png` });

  const redoc = await page.goto(`${baseUrl}/api/redoc`);
  if (!redoc.headers()['content-security-policy']) throw new Error('/api/redoc sent no Content-Security-Policy');
  const operation = page.locator('[data-section-id^="operation/"]');
  await operation.first().waitFor();
  // One `operation/<id>` section per operation (inside its `tag/<tag>/operation/<id>` one).
  const redocOperations = await operation.count();
  await page.screenshot({ path: `${shots}/redoc.png` });

  console.log(JSON.stringify({
    swagger_operations: swaggerOperations, swagger_servers: swaggerServers, redoc_operations: redocOperations,
    csp_violations: cspViolations, failed, errors,
  }));
} finally {
  await browser.close();
}
