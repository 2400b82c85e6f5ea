// Loads a page that runs the official Elastic RUM agent in headless Chromium and reports
// what the browser saw of the proxy: the CORS preflight and the intake request.
// Usage: node rum_page.js <proxy https url> <spki sha256 base64 of the proxy's key> [<jwt>]
// With a JWT, the page is a logged-in user's: the agent's `apmRequest` hook attaches
// `Authorization: Bearer <jwt>` to every request it sends.
// Prints one JSON line: {"preflight": <status|null>, "intake": <status|null>, "intakeUrl": …}
'use strict';
const fs = require('fs');
const path = require('path');
const { servePage, launchChromium } = require('./page_host');

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

async function main() {
  const server = await servePage(page, '/rum.js', bundle);
  const pageUrl = server.url;
  const { context, close } = await launchChromium(spki);
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
    await close();
    server.close();
  }
  console.log(JSON.stringify(result));
}

main();
