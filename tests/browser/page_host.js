// What the browser drivers (rum_page.js, otel_page.js) share: a loopback server for the test
// page and its script, and headless Chromium with a fresh profile that trusts the proxy's
// test certificate by its key and nothing else.
'use strict';
const http = require('http');
const fs = require('fs');
const os = require('os');
const path = require('path');
const { chromium } = require('playwright-core');

// Serves `page` at `/` and `script` at `scriptPath`; resolves to { url, close }.
async function servePage(page, scriptPath, script) {
  const server = http.createServer((req, res) => {
    if (req.url === scriptPath) {
      res.writeHead(200, { 'Content-Type': 'application/javascript' });
      res.end(script);
    } else {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end(page);
    }
  });
  await new Promise((ok) => server.listen(0, '127.0.0.1', ok));
  return { url: `http://127.0.0.1:${server.address().port}/`, close: () => server.close() };
}

// Headless Chromium with a fresh profile; resolves to { context, close }.
async function launchChromium(spki) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'browser-profile-'));
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
  const close = async () => {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  };
  return { context, close };
}

module.exports = { servePage, launchChromium };
