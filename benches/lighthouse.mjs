// `node benches/lighthouse.mjs <base url> <phase> [runs]`: Lighthouse on the dashboard's home page,
// desktop and mobile, in Debian's Chromium (CHROMIUM) with software WebGL. Prints one line per
// run and, last, the medians per form factor as JSON. Lighthouse 12.8 (the last release that runs
// on Node 20; 13 needs Node 22): the scoring of the categories is the same.

import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../web/package.json', import.meta.url));
const lighthouse = (await import(require.resolve('lighthouse'))).default;
const desktopConfig = (await import(require.resolve('lighthouse/core/config/desktop-config.js'))).default;
const chromeLauncher = await import(require.resolve('chrome-launcher'));

const [base, phase = 'warm', runsArg = '3'] = process.argv.slice(2);
assert.ok(base, 'usage: node benches/lighthouse.mjs <base url> <phase> [runs]');
const runs = Number(runsArg);

const chrome = await chromeLauncher.launch({
  chromePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  chromeFlags: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
});

const median = (values) => {
  const sorted = values.filter((v) => v !== null && v !== undefined).sort((a, b) => a - b);
  return sorted.length ? sorted[Math.floor((sorted.length - 1) / 2)] : null;
};

const results = {};
try {
  for (const formFactor of ['desktop', 'mobile']) {
    const rows = [];
    for (let run = 1; run <= runs; run += 1) {
      const options = { port: chrome.port, output: 'json', logLevel: 'error', onlyCategories: ['performance', 'accessibility', 'best-practices', 'seo'] };
      const result = await lighthouse(`${base}/`, options, formFactor === 'desktop' ? desktopConfig : undefined);
      const lhr = result.lhr;
      const audit = (id) => lhr.audits[id];
      const row = {
        performance: Math.round(lhr.categories.performance.score * 100),
        accessibility: Math.round(lhr.categories.accessibility.score * 100),
        best_practices: Math.round(lhr.categories['best-practices'].score * 100),
        seo: Math.round(lhr.categories.seo.score * 100),
        fcp_ms: Math.round(audit('first-contentful-paint').numericValue),
        lcp_ms: Math.round(audit('largest-contentful-paint').numericValue),
        tbt_ms: Math.round(audit('total-blocking-time').numericValue),
        cls: Number(audit('cumulative-layout-shift').numericValue.toFixed(3)),
        speed_index_ms: Math.round(audit('speed-index').numericValue),
        unused_js_kib: Math.round((audit('unused-javascript').details?.overallSavingsBytes ?? 0) / 1024),
        total_kib: Math.round(audit('total-byte-weight').numericValue / 1024),
        errors_in_console: audit('errors-in-console').score === 1 ? 0 : (audit('errors-in-console').details?.items?.length ?? 1),
      };
      const failing = Object.values(lhr.audits).filter((a) => a.score !== null && a.score < 1 && a.scoreDisplayMode === 'binary').map((a) => a.id);
      console.log(`${phase} ${formFactor} run ${run}: ${JSON.stringify(row)}${failing.length ? ` failing: ${failing.join(', ')}` : ''}`);
      rows.push(row);
    }
    results[formFactor] = Object.fromEntries(Object.keys(rows[0]).map((key) => [key, median(rows.map((r) => r[key]))]));
  }
} finally {
  await chrome.kill();
}
console.log(JSON.stringify({ phase, results }));
