// `node benches/dashboard.mjs <base url> [runs]`: time from navigation to the choropleth drawn with
// all areas, and bytes transferred, in headless Chromium (Debian's, CHROMIUM) with an empty cache
// each run. Prints one line per run, then the medians as JSON on the last line.

import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, runsArg = '5'] = process.argv.slice(2);
assert.ok(base, 'usage: node benches/dashboard.mjs <base url> [runs]');
const runs = Number(runsArg);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
});

async function once(label) {
  // A new context has an empty cache: every run downloads everything.
  const context = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await context.newPage();
  const cdp = await context.newCDPSession(page);
  await cdp.send('Network.enable');
  let bytes = 0;
  let requests = 0;
  let drawnAt = null;
  cdp.on('Network.loadingFinished', (event) => {
    // Until the choropleth is drawn: what the first view costs, not the panels loaded after it.
    if (drawnAt === null) { bytes += event.encodedDataLength; requests += 1; }
  });
  const started = Date.now();
  await page.goto(base, { waitUntil: 'commit' });
  await page.waitForFunction(() => document.body.dataset.drawn, null, { timeout: 120_000, polling: 'raf' });
  drawnAt = Date.now();
  const { drawn, areas } = await page.evaluate(() => ({ drawn: window.cruscotto.timings.drawn, areas: window.cruscotto.renderedAreaIds().length }));
  assert.equal(areas, 90, 'all areas drawn');
  await context.close();
  const result = { label, ms: Math.round(drawn), wall_ms: drawnAt - started, bytes, requests, areas };
  console.log(`${label}: choropleth drawn after ${result.ms} ms (navigation start → all ${areas} areas drawn; wall ${result.wall_ms} ms), ${(bytes / 1024).toFixed(0)} KiB transferred in ${requests} requests`);
  return result;
}

const median = (values) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const cold = await once('cold server (first view after start, queries not cached)');
const results = [];
for (let i = 1; i <= runs; i += 1) results.push(await once(`run ${i}`));
await browser.close();
const summary = { runs, median_ms: median(results.map((r) => r.ms)), median_bytes: median(results.map((r) => r.bytes)), cold_ms: cold.ms, cold_bytes: cold.bytes };
console.log(`median of ${runs}: ${summary.median_ms} ms, ${(summary.median_bytes / 1024).toFixed(0)} KiB (targets: < 1500 ms, < 2048 KiB compressed)`);
console.log(JSON.stringify(summary));
