// Loads a page that runs the official Elastic RUM agent in headless Chromium and reports
// what the browser saw of the proxy: the CORS preflight and the intake request.
// Usage: node rum_page.js <proxy https url> <spki sha256 base64 of the proxy's key> [<jwt>]
// With a JWT, the page is a logged-in user's: the agent's `apmRequest` hook attaches
// `Authorization: Bearer <jwt>` to every request it sends.
// Prints one JSON line: {"preflight": <status|null>, "intake": <status|null>, "intakeUrl": …}
'use strict';
const http = require('http');
const fs = require('fs');
const path = require('path');
const { chromium } = require('playwright-core');

const [proxyUrl, spki, jwt] = process.argv.slice(2);
const bundle = fs.readFileSync(
  path.join(__dirname, 'node_modules/@elastic/apm-rum/dist/bundles/elastic-apm-rum.umd.min.js'));

const page = `<!doctype html><html><head><title>rum test</title>
<script src="/rum.js"></script>
<script>
  const userToken = ${JSON.stringify(jwt || null)};
  elasticApm.init({ serviceName: 'browser-test', serverUrl: ${JSON.stringify(proxyUrl)},
                    environment: 'test', flushInterval: 100,
                    apmRequest: ({ xhr }) => {
                      if (userToken) xhr.setRequestHeader('Authorization', 'Bearer ' + userToken);
                      return true;
                    } });
</script></head><body><p>hello</p></body></html>`;

const server = http.createServer((req, res) => {
  if (req.url === '/rum.js') {
    res.writeHead(200, { 'Content-Type': 'application/javascript' });
    res.end(bundle);
  } else {
    res.writeHead(200, { 'Content-Type': 'text/html' });
    res.end(page);
  }
});

async function main() {
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  const pageUrl = `http://127.0.0.1:${server.address().port}/`;
  const profile = fs.mkdtempSync(path.join(require('os').tmpdir(), 'rum-profile-'));
  // A fresh profile each run.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic',
      // Trust the proxy's test certificate by its key, nothing else.
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
  const result = { preflight: null, intake: null, intakeUrl: null, errors: [] };
  try {
    const tab = context.pages()[0] || await context.newPage();
    tab.on('console', (m) => { if (m.type() === 'error') result.errors.push(m.text()); });
    tab.on('requestfailed', (r) => result.errors.push(`${r.method()} ${r.url()}: ${r.failure().errorText}`));
    // Preflights are not visible as page requests; the CDP network domain shows them.
    const cdp = await context.newCDPSession(tab);
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', (e) => {
      if (e.type === 'Preflight' || (e.response.url.includes('/rum/events') && e.response.status === 200 && result.preflight === null && e.response.headers['access-control-max-age'])) {
        result.preflight = e.response.status;
      }
    });
    const intake = tab.waitForResponse(
      (r) => r.url().includes('/rum/events') && r.request().method() === 'POST',
      { timeout: 20000 });
    await tab.goto(pageUrl);
    const response = await intake;
    result.intake = response.status();
    result.intakeUrl = response.url();
  } catch (e) {
    result.errors.push(String(e));
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  console.log(JSON.stringify(result));
}

main();
