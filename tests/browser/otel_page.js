// Loads a page that runs the OpenTelemetry JS web SDK (WebTracerProvider with the OTLP/HTTP
// trace exporter, bundled at run time by esbuild) in headless Chromium, and reports what the
// browser saw of the proxy: the CORS preflight and the export request.
// Usage: node otel_page.js <proxy https url> <spki sha256 base64 of the proxy's key> <service>
// Prints one JSON line: {"preflight": <status|null>, "export": <status|null>, "errors": [...]}
'use strict';
const esbuild = require('esbuild');
const { servePage, launchChromium } = require('./page_host');

const [proxyUrl, spki, service] = process.argv.slice(2);

// The SDK as an application would ship it: one bundle, the exporter sending JSON with fetch.
const bundle = esbuild.buildSync({
  stdin: {
    contents: `
      import { WebTracerProvider } from '@opentelemetry/sdk-trace-web';
      import { SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
      import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
      import { defaultResource, resourceFromAttributes } from '@opentelemetry/resources';
      const config = window.OTEL_TEST;
      const provider = new WebTracerProvider({
        // The SDK's own attributes (telemetry.sdk.*: language "webjs"), with the app's name.
        resource: defaultResource().merge(resourceFromAttributes({ 'service.name': config.service })),
        spanProcessors: [new SimpleSpanProcessor(
          new OTLPTraceExporter({ url: config.proxy + '/v1/traces' }))],
      });
      const tracer = provider.getTracer('otel-page');
      const span = tracer.startSpan('browser-otlp-span');
      span.setAttribute('page', 'checkout');
      span.end();
      provider.forceFlush();
    `,
    resolveDir: __dirname,
  },
  bundle: true,
  write: false,
  format: 'iife',
  platform: 'browser',
}).outputFiles[0].text;

const page = `<!doctype html><html><head><title>otel test</title>
<script>window.OTEL_TEST = ${JSON.stringify({ proxy: proxyUrl.replace(/\/$/, ''), service })};</script>
<script src="/otel.js"></script></head><body><p>hello</p></body></html>`;

async function main() {
  const server = await servePage(page, '/otel.js', bundle);
  const pageUrl = server.url;
  const { context, close } = await launchChromium(spki);
  const result = { preflight: null, export: null, errors: [] };
  try {
    const tab = context.pages()[0] || await context.newPage();
    tab.on('console', (m) => { if (m.type() === 'error') result.errors.push(m.text()); });
    const cdp = await context.newCDPSession(tab);
    await cdp.send('Network.enable');
    cdp.on('Network.responseReceived', (e) => {
      if (e.type === 'Preflight' && e.response.url.includes('/v1/traces')) {
        result.preflight = e.response.status;
      }
    });
    // The export's answer, whatever it is (a refusal is an answer too).
    cdp.on('Network.loadingFailed', (e) => result.errors.push(`${e.type}: ${e.errorText}`));
    const exported = tab.waitForResponse(
      (r) => r.url().includes('/v1/traces') && r.request().method() === 'POST',
      { timeout: 20000 });
    await tab.goto(pageUrl);
    result.export = (await exported).status();
  } catch (e) {
    result.errors.push(String(e));
  } finally {
    await close();
    server.close();
  }
  console.log(JSON.stringify(result));
}

main();
