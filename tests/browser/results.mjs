// Browser check of how a panel tells a failed refresh and a failed first computation, in Italian
// and English: `node tests/browser/results.mjs <base url> <dashboard> <expect: kept|time>`.
// Drives Debian's Chromium (CHROMIUM) with playwright-core. Exits 1 on failure.

import { createRequire } from 'node:module';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');

const [base, dashboard, expect] = process.argv.slice(2);
assert.ok(base && dashboard && ['kept', 'time'].includes(expect), 'usage: results.mjs <base url> <dashboard> <kept|time>');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1'],
});
try {
  for (const [language, size] of [['it', { width: 1440, height: 900 }], ['en', { width: 390, height: 844 }]]) {
    const page = await browser.newPage({ viewport: size });
    await page.goto(`${base}/?dashboard=${dashboard}${language === 'en' ? '&lang=en' : ''}`, { waitUntil: 'domcontentloaded' });
    const panel = page.locator('section[data-panel]').first();
    if (expect === 'kept') {
      await panel.locator('.kpi-value').first().waitFor({ timeout: 60_000 });
      const note = await panel.locator('.freshness').textContent();
      assert.match(note, language === 'it' ? /Aggiornamento non riuscito L’ultimo ricalcolo non è riuscito: si mostrano i risultati calcolati il / : /Update failed The last recomputation failed: showing the results computed on /, note);
      console.log(`- ${language}: the last result is shown with the note: ${note.trim()}`);
    } else {
      await panel.locator('.panel-failed').waitFor({ timeout: 60_000 });
      const text = await panel.locator('.panel-failed > p').textContent();
      // The first visitor meets the time limit; a later one, within the retry interval, the failure it left.
      assert.match(text, language === 'it' ? /Il calcolo di questo indicatore (richiede più tempo del consentito|non è riuscito di recente)/ : /Computing this indicator (takes longer than allowed|failed lately)/, text);
      assert.doesNotMatch(await panel.locator('.panel-failed > p').textContent(), /Query time limit/);
      assert.equal(await panel.locator('.panel-failed details').getAttribute('open'), null, 'the technical detail is folded');
      console.log(`- ${language}: the failure explained: ${text.trim()}`);
    }
    await page.close();
  }
  console.log('results browser check: passed');
} catch (error) {
  console.error(error);
  process.exitCode = 1;
} finally {
  await browser.close();
}
