// Browser test of the dashboard: `node tests/browser/dashboard.mjs <base url> <screenshot dir>`.
// Drives Debian's Chromium (CHROMIUM, default /usr/bin/chromium) with playwright-core, checks the
// map, the side panel against the SQL answer, CSV export, language switch, URL state, keyboard use
// and the metropolitan view, runs axe-core on each page and saves screenshots. Exits 1 on failure.

import { createRequire } from 'node:module';
import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import assert from 'node:assert/strict';

const require = createRequire(new URL('../../web/package.json', import.meta.url));
const { chromium } = require('playwright-core');
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

const [base, screenshotDir = 'target/dashboard-screenshots'] = process.argv.slice(2);
assert.ok(base, 'usage: node tests/browser/dashboard.mjs <base url> [screenshot dir]');
mkdirSync(screenshotDir, { recursive: true });
const TIMEOUT = 180_000;

async function sql(query) {
  const response = await fetch(`${base}/api/v1/sql`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: query });
  const text = await response.text();
  assert.equal(response.status, 200, `${query}\n${text}`);
  return JSON.parse(text);
}

function step(message) {
  console.log(`- ${message}`);
}

async function accessibility(page, label) {
  await page.evaluate(axeSource);
  const result = await page.evaluate(() => globalThis.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
  for (const v of result.violations) {
    console.log(`  axe ${label}: ${v.impact} ${v.id} (${v.nodes.length}) ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
  }
  assert.deepEqual(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', ')})`), [], `axe-core on ${label}: serious or critical violations`);
  step(`axe-core on ${label}: ${result.violations.length} violations, none serious or critical (${result.passes.length} rules pass)`);
}

async function waitDrawn(page, indicator) {
  await page.waitForFunction((key) => document.body.dataset.drawn === key, indicator, { timeout: TIMEOUT });
}

async function clickArea(page, id) {
  const [point] = await sql(`SELECT ST_XMin(ST_PointOnSurface(geometry)) AS lon, ST_YMin(ST_PointOnSurface(geometry)) AS lat FROM bologna.aree_statistiche WHERE codice_area_statistica = ${id}`);
  const pixel = await page.evaluate(([lon, lat]) => window.cruscotto.project([lon, lat]), [point.lon, point.lat]);
  const box = await page.locator('#map canvas').boundingBox();
  await page.mouse.move(box.x + pixel.x, box.y + pixel.y);
  await page.mouse.click(box.x + pixel.x, box.y + pixel.y);
  await page.waitForFunction((area) => document.body.dataset.area === area, String(id), { timeout: TIMEOUT });
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--use-angle=swiftshader',
    '--enable-unsafe-swiftshader', '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1',
  ],
});
const context = await browser.newContext({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true, locale: 'it-IT' });
const outside = [];
const problems = [];
context.on('request', (request) => {
  const url = request.url();
  if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) outside.push(url);
});
const page = await context.newPage();
page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error' || /Content Security Policy/.test(message.text())) problems.push(`console ${message.type()}: ${message.text()}`);
});

try {
  // 1. The home dashboard: the choropleth draws all 90 statistical areas.
  await page.goto(base, { waitUntil: 'domcontentloaded' });
  // Keyboard users meet the skip link first.
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.className), 'visually-hidden-focusable skip-link');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.choropleth), null, { timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => document.body.dataset.choropleth), 'ready', await page.locator('#errors').textContent());
  const firstIndicator = await page.evaluate(() => document.body.dataset.indicator);
  assert.equal(firstIndicator, 'indice_divario_digitale:indice');
  await waitDrawn(page, firstIndicator);
  const drawn = await page.evaluate(() => window.cruscotto.renderedAreaIds().length);
  assert.equal(drawn, 90, 'the map draws all 90 areas');
  step(`map drawn with ${drawn} areas, indicator ${firstIndicator}`);
  assert.match(await page.locator('#indicator-info').textContent(), /versione del metodo 1\.0/);
  assert.ok(await page.locator('#legend li').count() >= 5, 'the legend has its classes');
  await page.waitForFunction(() => document.body.dataset.layers === 'ready', null, { timeout: TIMEOUT });
  await page.waitForSelector('section[data-panel="sintesi_citta"] .kpi-value', { timeout: TIMEOUT });
  await page.waitForSelector('section[data-panel="indice_per_quartiere"] .chart svg', { timeout: TIMEOUT });
  // The demo is complete: the service logs and the sensors come from the built-in simulators,
  // so every indicator, panel and layer is live, and what is simulated says so.
  await page.waitForSelector('section[data-panel="servizi_online_per_area"] .freshness', { timeout: TIMEOUT });
  assert.equal(await page.locator('#indicator option[value="servizi_online_per_area:quota_online_pct"]').isDisabled(), false);
  assert.equal(await page.locator('#indicator option:disabled').count(), 0, 'no indicator is unavailable');
  assert.equal(await page.locator('#unavailable').textContent(), '');
  assert.equal(await page.locator('[data-unavailable="true"]').count(), 0, 'no panel is unavailable');
  assert.match(await page.locator('section[data-panel="servizi_online_per_area"] .freshness').textContent(), /Dati simulati/);
  assert.equal(await page.locator('input[data-layer="sensori"]').isDisabled(), false);
  assert.match(await page.locator('label[for="layer-sensori"]').textContent(), /Dati simulati/);
  // Real data carries no such label.
  assert.doesNotMatch(await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent(), /simulati/);
  // Each indicator says what period its data describe and where they come from; the load time
  // is only "caricati il"; a series whose last value is over a year old is flagged as dated.
  const summary = await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent();
  assert.match(summary, /Periodo di riferimento: 2021–2024\. Fonte: Comune di Bologna .*Dati caricati il /);
  assert.match(await page.locator('#indicator-info .freshness').textContent(), /Periodo di riferimento: 2021–2024\./);
  const wifi = page.locator('section[data-panel="connessioni_wifi_giornaliere"] .freshness');
  await page.waitForFunction(() => /Periodo/.test(document.querySelector('section[data-panel="connessioni_wifi_giornaliere"] .freshness')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.match(await wifi.textContent(), /Periodo di riferimento: 31 mag 2023 – 20 giu 2024\./);
  assert.equal(await wifi.locator('[data-dated="true"]').count(), 1, 'the Wi-Fi series ended in 2024: dated');
  const visits = page.locator('section[data-panel="visite_contapersone"] .freshness');
  await page.waitForFunction(() => /Periodo/.test(document.querySelector('section[data-panel="visite_contapersone"] .freshness')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.equal(await visits.locator('[data-dated="true"]').count(), 0, 'the live people counters are not dated');
  await page.waitForSelector('section[data-panel="visite_contapersone"] .chart svg', { timeout: TIMEOUT });
  const axis = await page.locator('section[data-panel="visite_contapersone"] .chart svg text').allTextContents();
  assert.ok(axis.some((label) => /^\d{4}-\d{2}-\d{2}$/.test(label)), `days on the axis: ${axis}`);
  assert.ok(!axis.some((label) => label.includes('T00:00')), `no raw timestamps on the axis: ${axis}`);
  assert.doesNotMatch(summary, /aggiornati al/);
  await page.screenshot({ path: join(screenshotDir, '01-divario-digitale.png'), fullPage: true });
  await accessibility(page, 'the home dashboard');

  // 2. Pick an indicator, click an area: the side panel shows the value SQL gives.
  const indicator = 'residenti_offline_attesi:quota_offline_attesi_pct';
  await page.selectOption('#indicator', indicator);
  await waitDrawn(page, indicator);
  await clickArea(page, 10);
  const [expected] = await sql('SELECT area_statistica, quota_offline_attesi_pct FROM residenti_offline_attesi WHERE codice_area_statistica = 10');
  const shown = await page.locator(`#area-body dd[data-indicator="${indicator}"]`).getAttribute('data-value');
  assert.equal(Number(shown), expected.quota_offline_attesi_pct, 'the side panel shows the SQL value');
  assert.equal(await page.locator('#area-name').textContent(), expected.area_statistica);
  assert.match(await page.locator(`#area-body dd[data-indicator="${indicator}"]`).textContent(), /posizione \d+ su 79/);
  await page.waitForSelector('#area-body [data-series="famiglie_per_area_anno"] svg', { timeout: TIMEOUT });
  const url = new URL(page.url());
  assert.equal(url.searchParams.get('indicator'), indicator);
  assert.equal(url.searchParams.get('area'), '10');
  step(`area 10 (${expected.area_statistica}): side panel ${shown} = SQL ${expected.quota_offline_attesi_pct}; URL ${url.search}`);
  await page.screenshot({ path: join(screenshotDir, '02-area-selected.png'), fullPage: true });

  // 3. Export the data behind a panel as CSV.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.locator('section[data-panel="indice_divario_digitale"] a.csv-link').click(),
  ]);
  const csv = readFileSync(await download.path(), 'utf8').trim().split('\n');
  const [{ n }] = await sql('SELECT count(*) AS n FROM indice_divario_digitale');
  assert.equal(download.suggestedFilename(), 'indice_divario_digitale.csv');
  assert.equal(csv[0], 'codice_area_statistica,area_statistica,adozione,bisogno,connettivita,supporto,indice,versione_metodo');
  assert.equal(csv.length - 1, n);
  step(`CSV export: ${download.suggestedFilename()} with ${csv.length - 1} rows`);

  // 4. Keyboard: an area can be chosen from the map's data table.
  await page.focus('#map-data summary');
  await page.keyboard.press('Enter');
  const firstRowButton = page.locator('#map-table tbody tr').first().locator('button');
  const firstName = await page.locator('#map-table tbody tr').first().locator('th').textContent();
  await firstRowButton.focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction((name) => document.querySelector('#area-name')?.textContent === name, firstName, { timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => document.activeElement.id), 'area-panel');
  step(`keyboard: "${firstName}" chosen from the data table, focus moved to the side panel`);

  // 5. English.
  await page.click('#language');
  await page.waitForFunction(() => document.documentElement.lang === 'en', null, { timeout: TIMEOUT });
  assert.equal(await page.locator('h1').textContent(), 'The digital divide in Bologna');
  await page.waitForSelector('section[data-panel="sintesi_citta"] .kpi-value', { timeout: TIMEOUT });
  assert.match(await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent(), /Reference period: 2021–2024\. Source: Comune di Bologna .*Data loaded on /);
  await page.waitForSelector('section[data-panel="servizi_online_per_area"] .freshness', { timeout: TIMEOUT });
  assert.match(await page.locator('section[data-panel="servizi_online_per_area"] .freshness').textContent(), /Simulated data/);
  assert.equal(new URL(page.url()).searchParams.get('lang'), 'en');
  await page.screenshot({ path: join(screenshotDir, '03-english.png'), fullPage: true });
  await accessibility(page, 'the home dashboard in English');
  step('switched to English');

  // 6. The URL holds the state: a shared link opens the same view.
  const shared = `${base}/?dashboard=divario_digitale&indicator=anziani_per_area:quota_over_80_pct&area=42&lang=en`;
  await page.goto(shared, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(() => document.body.dataset.area === '42', null, { timeout: TIMEOUT });
  assert.equal(await page.locator('#indicator').inputValue(), 'anziani_per_area:quota_over_80_pct');
  assert.equal(await page.evaluate(() => document.documentElement.lang), 'en');
  assert.equal(await page.locator('#area-body dd[data-indicator="anziani_per_area:quota_over_80_pct"]').getAttribute('data-value'), '', 'area 42 is excluded: no data');
  step('a shared URL reopens indicator, area and language');

  // 7. The metropolitan view: the 55 comuni with the ANPR indicators.
  await page.click('a[data-dashboard="metropolitana"]');
  await page.waitForURL(/dashboard=metropolitana/, { timeout: TIMEOUT });
  await page.waitForFunction(() => new URLSearchParams(location.search).get('dashboard') === 'metropolitana' && document.body.dataset.choropleth === 'ready', null, { timeout: TIMEOUT });
  await waitDrawn(page, 'anpr_certificati_per_1000:certificati_per_1000');
  assert.equal(await page.evaluate(() => window.cruscotto.renderedAreaIds().length), 55, 'the metropolitan map draws the 55 comuni');
  await page.fill('#search', 'Imola');
  await page.click('#search-form button[type=submit]');
  const [imola] = await sql("SELECT cod_istat_comune, certificati_per_1000 FROM anpr_certificati_per_1000 WHERE comune = 'IMOLA'");
  await page.waitForFunction((code) => document.body.dataset.area === code, imola.cod_istat_comune, { timeout: TIMEOUT });
  assert.equal(Number(await page.locator('#area-body dd[data-indicator="anpr_certificati_per_1000:certificati_per_1000"]').getAttribute('data-value')), imola.certificati_per_1000);
  await page.waitForSelector('section[data-panel="anpr_certificati_per_1000"] .chart svg', { timeout: TIMEOUT });
  await page.screenshot({ path: join(screenshotDir, '04-metropolitana.png'), fullPage: true });
  await accessibility(page, 'the metropolitan view');
  step(`metropolitan view: 55 comuni; search "Imola" selects ${imola.cod_istat_comune} = ${imola.certificati_per_1000}`);

  assert.deepEqual(outside, [], 'requests to anything but this server');
  assert.deepEqual(problems, [], 'errors in the page');
  console.log(`screenshots in ${screenshotDir}`);
  console.log('browser test: all checks passed');
} catch (error) {
  await page.screenshot({ path: join(screenshotDir, 'failure.png'), fullPage: true }).catch(() => {});
  console.error(error);
  if (problems.length) console.error(problems.join('\n'));
  process.exitCode = 1;
} finally {
  await browser.close();
}
