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

/** Panels load their data when they come near the screen: bring each into view in turn and wait
 * until it has loaded (a fast scroll on a loaded machine may skip a frame in which it showed). */
async function showPanels(page) {
  const cards = page.locator('#panels > section');
  const count = await cards.count();
  for (let i = 0; i < count; i += 1) {
    await cards.nth(i).scrollIntoViewIfNeeded();
    await page.waitForFunction((index) => {
      const content = document.querySelectorAll('#panels > section')[index]?.querySelector('.panel-content');
      return !content || !/^(Caricamento…|Loading…)$/.test(content.textContent.trim());
    }, i, { timeout: TIMEOUT });
  }
}

async function waitDrawn(page, indicator) {
  await page.waitForFunction((key) => document.body.dataset.drawn === key, indicator, { timeout: TIMEOUT });
}

/** The map as MapLibre draws it: the first view is an SVG drawing until the map is used. */
async function interactive(page) {
  if (await page.evaluate(() => document.body.dataset.map) !== 'static') return;
  // From outside the map onto it, so the pointer enters it even if it rested there.
  await page.mouse.move(0, 0);
  await page.hover('#map');
  await page.waitForFunction(() => document.body.dataset.upgraded === 'ready', null, { timeout: TIMEOUT });
  await page.evaluate(() => window.cruscotto.map.idle());
}

async function clickArea(page, id) {
  await interactive(page);
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
  // The uptake pillar is the same in every area: it carries no weight, and the page says so.
  assert.match(await page.locator('#indicator-info .weights').textContent(), /Pesi effettivi dei pilastri: adozione 0,0%, bisogno 33,3%, connettivita 33,3%, supporto 33,3%/);
  // Areas with fewer than 1,000 residents are not ranked: hatched, and counted in the legend.
  const [{ small }] = await sql('SELECT count(*) AS small FROM aree_statistiche_mappa WHERE residenti IS NULL OR residenti < 1000');
  assert.ok(small > 0, 'the demo has small areas');
  assert.match(await page.locator('#legend').textContent(), new RegExp(`Non classificata: meno di 1\\.000 residenti \\(${small}\\)`));
  step(`weights shown; ${small} areas under 1,000 residents hatched and not ranked`);
  // The first view is the drawing: MapLibre's code is not loaded until the map is used; the
  // pointer on the map makes it interactive, with the same colours.
  assert.equal(await page.evaluate(() => document.body.dataset.map), 'static');
  assert.equal(await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.includes('maplibre-gl.mjs')).length), 0, 'MapLibre is not loaded for the first view');
  const drawing = await page.locator('#map svg path[data-area]').evaluateAll((paths) => paths.map((p) => [p.dataset.area, p.getAttribute('fill')]));
  await interactive(page);
  const painted = await page.evaluate(() => window.cruscotto.map.features.map((f) => [String(f.properties.codice_area_statistica), window.cruscotto.map.map.getFeatureState({ source: 'areas', id: f.properties.codice_area_statistica }).colour]));
  assert.deepEqual(painted, drawing, 'the interactive map has the drawing\'s colours');
  step('first view drawn as SVG without MapLibre; the pointer on the map loads it, same colours');
  assert.equal(await page.locator('.maplibregl-ctrl-zoom-in').getAttribute('title'), 'Aumenta lo zoom', 'MapLibre controls in Italian');
  assert.ok(await page.locator('#legend li').count() >= 5, 'the legend has its classes');
  await page.waitForFunction(() => document.body.dataset.layers === 'ready', null, { timeout: TIMEOUT });
  // Nothing of the panels is loaded before they come near the screen (ECharts included).
  assert.equal(await page.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.includes('echarts')).length), 0, 'ECharts is not loaded for the first view');
  await showPanels(page);
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
  // The summary reads the composite index, whose connectivity pillar reads the simulated probes:
  // it says so. Real data carries no such label (the Wi-Fi series, checked below).
  assert.match(await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent(), /Dati simulati/);
  // Each indicator says what period its data describe and where they come from; the load time
  // is only "caricati il"; a series whose last value is over a year old is flagged as dated.
  const summary = await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent();
  assert.match(summary, /Periodo di riferimento: 2021–2024\. Fonte: Comune di Bologna .*Dati caricati il /);
  assert.match(await page.locator('#indicator-info .freshness').textContent(), /Periodo di riferimento: 2021–2024; sonde: ultimi 30 giorni\./);
  const wifi = page.locator('section[data-panel="connessioni_wifi_giornaliere"] .freshness');
  await page.waitForFunction(() => /Periodo/.test(document.querySelector('section[data-panel="connessioni_wifi_giornaliere"] .freshness')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.match(await wifi.textContent(), /Periodo di riferimento: 31 mag 2023 – 20 giu 2024\./);
  assert.doesNotMatch(await wifi.textContent(), /simulati/, 'real data carries no simulated label');
  assert.equal(await wifi.locator('[data-dated="true"]').count(), 1, 'the Wi-Fi series ended in 2024: dated');
  const visits = page.locator('section[data-panel="visite_contapersone"] .freshness');
  await page.waitForFunction(() => /Periodo/.test(document.querySelector('section[data-panel="visite_contapersone"] .freshness')?.textContent ?? ''), null, { timeout: TIMEOUT });
  assert.equal(await visits.locator('[data-dated="true"]').count(), 0, 'the live people counters are not dated');
  await page.waitForSelector('section[data-panel="visite_contapersone"] .chart svg', { timeout: TIMEOUT });
  const axis = await page.locator('section[data-panel="visite_contapersone"] .chart svg text').allTextContents();
  assert.ok(axis.some((label) => /^\d{4}-\d{2}-\d{2}$/.test(label)), `days on the axis: ${axis}`);
  assert.ok(!axis.some((label) => label.includes('T00:00')), `no raw timestamps on the axis: ${axis}`);
  assert.doesNotMatch(summary, /aggiornati al/);
  // Chart axes in the page's language: thousands grouped with a dot in Italian.
  await page.waitForSelector('section[data-panel="connessioni_wifi_giornaliere"] .chart svg', { timeout: TIMEOUT });
  const wifiAxis = await page.locator('section[data-panel="connessioni_wifi_giornaliere"] .chart svg text').allTextContents();
  assert.ok(wifiAxis.some((label) => /^\d{1,3}(\.\d{3})+$/.test(label)), `Italian thousands on the axis: ${wifiAxis}`);
  assert.ok(!wifiAxis.some((label) => /^\d{1,3}(,\d{3})+$/.test(label)), `no English thousands on the Italian page: ${wifiAxis}`);
  await page.screenshot({ path: join(screenshotDir, '01-divario-digitale.png'), fullPage: true });
  await accessibility(page, 'the home dashboard');

  // 1b. Readable at a glance (1440 × 900): the legend with its unit beside the map without
  // scrolling, the quartieri named on the map, the top areas with residents and people, sortable.
  await page.setViewportSize({ width: 1440, height: 900 });
  await page.evaluate(() => window.scrollTo(0, 0));
  const legendBox = await page.locator('#map-legend').boundingBox();
  const mapBox = await page.locator('#map').boundingBox();
  assert.ok(legendBox.y + legendBox.height <= 900, `the legend is visible without scrolling (${JSON.stringify(legendBox)})`);
  assert.ok(legendBox.x >= mapBox.x + mapBox.width && legendBox.y >= mapBox.y && legendBox.y < mapBox.y + mapBox.height, 'the legend is beside the map');
  assert.match(await page.locator('#legend-heading').textContent(), /Legenda \(punteggio 0–100\)/);
  const [{ quartieri }] = await sql('SELECT count(DISTINCT quartiere) AS quartieri FROM aree_statistiche_mappa');
  assert.equal(await page.locator('.district-label').count(), quartieri, 'one label per quartiere on the map');
  await page.waitForFunction(() => document.body.dataset.top === 'indice_divario_digitale:indice', null, { timeout: TIMEOUT });
  const topRows = await sql(`SELECT i.codice_area_statistica AS area, i.indice, m.residenti, o.offline_attesi FROM indice_divario_digitale i
    JOIN aree_statistiche_mappa m USING (codice_area_statistica) JOIN residenti_offline_attesi o USING (codice_area_statistica)
    WHERE i.indice IS NOT NULL AND m.residenti >= 1000 ORDER BY i.indice DESC, i.codice_area_statistica LIMIT 10`);
  assert.equal(await page.locator('#top-areas tbody tr').count(), 10);
  assert.equal(await page.locator('#top-areas tbody tr').first().getAttribute('data-area'), String(topRows[0].area), 'the top area is the highest index');
  const topText = await page.locator('#top-areas tbody tr').first().textContent();
  assert.ok(topText.includes(new Intl.NumberFormat('it-IT', { useGrouping: 'always' }).format(topRows[0].offline_attesi)), `expected offline adults shown: ${topText}`);
  await page.click('#top-areas button[data-sort="residents"]');
  const [biggest] = await sql(`SELECT m.codice_area_statistica AS area FROM indice_divario_digitale i JOIN aree_statistiche_mappa m USING (codice_area_statistica)
    WHERE i.indice IS NOT NULL AND m.residenti >= 1000 ORDER BY m.residenti DESC LIMIT 1`);
  assert.equal(await page.locator('#top-areas tbody tr').first().getAttribute('data-area'), String(biggest.area), 'sorted by residents');
  assert.equal(await page.locator('#top-areas th[aria-sort="descending"] button').getAttribute('data-sort'), 'residents');
  await page.screenshot({ path: join(screenshotDir, '01b-1440x900.png'), fullPage: false });
  step(`1440×900: legend beside the map, ${quartieri} quartieri named, top areas sortable (top ${topRows[0].area})`);
  await page.setViewportSize({ width: 1400, height: 1000 });

  // 2. Pick an indicator, click an area: the side panel shows the value SQL gives.
  const indicator = 'residenti_offline_attesi:quota_offline_attesi_pct';
  await page.selectOption('#indicator', indicator);
  await waitDrawn(page, indicator);
  await clickArea(page, 10);
  const [expected] = await sql('SELECT area_statistica, quota_offline_attesi_pct FROM residenti_offline_attesi WHERE codice_area_statistica = 10');
  const shown = await page.locator(`#area-body dd[data-indicator="${indicator}"]`).getAttribute('data-value');
  assert.equal(Number(shown), expected.quota_offline_attesi_pct, 'the side panel shows the SQL value');
  assert.equal(await page.locator('#area-name').textContent(), expected.area_statistica);
  // Ranks: among the areas with 1,000 residents or more; ties share the span of positions.
  const [{ ranked, above }] = await sql(`SELECT count(*) AS ranked, count(*) FILTER (WHERE o.quota_offline_attesi_pct > (SELECT quota_offline_attesi_pct FROM residenti_offline_attesi WHERE codice_area_statistica = 10)) AS above
    FROM residenti_offline_attesi o JOIN aree_statistiche_mappa m USING (codice_area_statistica) WHERE o.quota_offline_attesi_pct IS NOT NULL AND m.residenti >= 1000`);
  assert.match(await page.locator(`#area-body dd[data-indicator="${indicator}"]`).textContent(), new RegExp(`posizione ${above + 1} su ${ranked}`));
  // Every value beside the city's.
  const [city] = await sql('SELECT quota_adulti_offline_pct, over_65_soli_pct FROM sintesi_citta');
  assert.equal(Number(await page.locator(`#area-body dd[data-indicator="${indicator}"] .city-value`).getAttribute('data-city')), city.quota_adulti_offline_pct);
  assert.match(await page.locator(`#area-body dd[data-indicator="${indicator}"]`).textContent(), /intera città: \d+,\d/);
  const [tie] = await sql(`SELECT min(p.codice_area_statistica) AS area, count(*) AS tied,
      (SELECT count(*) FROM indice_divario_pilastri q JOIN aree_statistiche_mappa n USING (codice_area_statistica) WHERE q.connettivita IS NOT NULL AND n.residenti >= 1000) AS of
    FROM indice_divario_pilastri p JOIN aree_statistiche_mappa m USING (codice_area_statistica) WHERE p.connettivita = 100 AND m.residenti >= 1000`);
  assert.ok(tie.tied > 1, 'the demo has tied areas');
  await clickArea(page, tie.area);
  assert.equal(await page.locator('#area-body dd[data-indicator="indice_divario_pilastri:connettivita"] .rank').getAttribute('data-rank'), `1–${tie.tied}`);
  assert.match(await page.locator('#area-body dd[data-indicator="indice_divario_pilastri:connettivita"]').textContent(), new RegExp(`posizione 1–${tie.tied} su ${tie.of} \\(a pari merito\\)`));
  step(`ranks: area 10 is ${above + 1} of ${ranked}; area ${tie.area} shares 1–${tie.tied} of ${tie.of} on connectivity`);
  const [caab] = await sql('SELECT codice_area_statistica AS area FROM aree_statistiche_mappa WHERE residenti < 1000 ORDER BY residenti DESC LIMIT 1');
  await clickArea(page, caab.area);
  assert.match(await page.locator(`#area-body dd[data-indicator="${indicator}"]`).textContent(), /non classificata: meno di 1\.000 residenti/);
  // Two areas side by side.
  await clickArea(page, 10);
  await page.click('#compare');
  await clickArea(page, 42);
  await page.waitForSelector('#comparison tbody tr', { timeout: TIMEOUT });
  const compared = await page.locator('#comparison thead th').allTextContents();
  const [a10, a42] = await sql('SELECT area_statistica FROM aree_statistiche_mappa WHERE codice_area_statistica IN (10, 42) ORDER BY codice_area_statistica');
  assert.deepEqual(compared.slice(1, 3), [a10.area_statistica, a42.area_statistica]);
  assert.equal(new URL(page.url()).searchParams.get('compare'), '10');
  await page.screenshot({ path: join(screenshotDir, '02b-compare.png'), fullPage: true });
  await page.click('#compare-stop');
  await clickArea(page, 10);
  // A unit per column: the over-65s living alone are a share of the over-65s, not of residents.
  await page.selectOption('#indicator', 'anziani_per_area:over_65_soli_pct');
  await waitDrawn(page, 'anziani_per_area:over_65_soli_pct');
  assert.match(await page.locator('#indicator-info').textContent(), /% degli over 65/);
  assert.equal(Number(await page.locator('#area-body dd[data-indicator="anziani_per_area:over_65_soli_pct"] .city-value').getAttribute('data-city')), city.over_65_soli_pct);
  await page.selectOption('#indicator', indicator);
  await waitDrawn(page, indicator);
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
  assert.equal(csv[0], 'codice_area_statistica,area_statistica,adozione,bisogno,connettivita,supporto,indice,peso_adozione_pct,peso_bisogno_pct,peso_connettivita_pct,peso_supporto_pct,versione_metodo');
  // Table headers are the columns' declared labels and units, not their SQL names.
  const headers = await page.locator('section[data-panel="indice_divario_digitale"] thead th').allTextContents();
  assert.ok(headers.includes('Indice composito (punteggio 0–100)'), `headers: ${headers}`);
  assert.ok(headers.includes('Area statistica'), `headers: ${headers}`);
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

  // 5. English. The city's texts come from `[city]` in cruscotto.toml, in both languages.
  const brand = page.locator('.it-brand-tagline');
  assert.equal(await brand.textContent(), 'Comune di Bologna · persone, servizi e divario digitale');
  assert.match(await page.locator('footer').textContent(), /Dati: Comune di Bologna \(CC BY 4\.0\)/);
  await page.click('#language');
  await page.waitForFunction(() => document.documentElement.lang === 'en', null, { timeout: TIMEOUT });
  assert.equal(await brand.textContent(), 'Comune di Bologna · people, services and the digital divide');
  assert.match(await page.locator('footer').textContent(), /Data: Comune di Bologna \(CC BY 4\.0\), ISTAT boundaries/);
  assert.equal(await page.locator('h1').textContent(), 'The digital divide in Bologna');
  await showPanels(page);
  await page.waitForSelector('section[data-panel="sintesi_citta"] .kpi-value', { timeout: TIMEOUT });
  assert.match(await page.locator('section[data-panel="sintesi_citta"] .freshness').textContent(), /Reference period: 2021–2024\. Source: Comune di Bologna .*Data loaded on /);
  await page.waitForSelector('section[data-panel="servizi_online_per_area"] .freshness', { timeout: TIMEOUT });
  assert.match(await page.locator('section[data-panel="servizi_online_per_area"] .freshness').textContent(), /Simulated data/);
  assert.equal(new URL(page.url()).searchParams.get('lang'), 'en');
  await page.waitForSelector('section[data-panel="indice_divario_digitale"] thead th', { timeout: TIMEOUT });
  const headersEn = await page.locator('section[data-panel="indice_divario_digitale"] thead th').allTextContents();
  assert.equal(await page.locator('.maplibregl-ctrl-zoom-in').getAttribute('title'), 'Zoom in');
  assert.ok(headersEn.includes('Composite index (score 0–100)'), `headers: ${headersEn}`);
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
  await showPanels(page);
  await page.waitForSelector('section[data-panel="anpr_certificati_per_1000"] .chart svg', { timeout: TIMEOUT });
  await page.screenshot({ path: join(screenshotDir, '04-metropolitana.png'), fullPage: true });
  await accessibility(page, 'the metropolitan view');
  step(`metropolitan view: 55 comuni; search "Imola" selects ${imola.cod_istat_comune} = ${imola.certificati_per_1000}`);

  // 8. A phone (390 × 844, touch): map first, cooperative gestures, a bottom sheet after a tap,
  // targets of 44 px, visible field borders, no horizontal overflow, in both languages.
  const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, deviceScaleFactor: 2, locale: 'it-IT' });
  phone.on('request', (request) => {
    const url = request.url();
    if (!url.startsWith(base) && !url.startsWith('data:') && !url.startsWith('blob:')) outside.push(url);
  });
  const mobile = await phone.newPage();
  mobile.on('pageerror', (error) => problems.push(`phone page error: ${error.message}`));
  for (const language of ['it', 'en']) {
    await mobile.goto(`${base}/?dashboard=divario_digitale${language === 'en' ? '&lang=en' : ''}`, { waitUntil: 'domcontentloaded' });
    await mobile.waitForFunction(() => document.body.dataset.choropleth === 'ready', null, { timeout: TIMEOUT });
    await waitDrawn(mobile, 'indice_divario_digitale:indice');
    await mobile.waitForFunction(() => document.body.dataset.layers === 'ready', null, { timeout: TIMEOUT });
    assert.ok(await mobile.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), `${language}: no horizontal overflow at 390 px`);
    const mapBox = await mobile.locator('#map').boundingBox();
    const selectBox = await mobile.locator('#indicator').boundingBox();
    assert.ok(mapBox.y < selectBox.y, `${language}: the map comes before the indicator selector`);
    assert.ok(mapBox.y < 844, `${language}: the map starts in the first screen (${mapBox.y})`);
    // First the map as a drawing (SVG): no map library is loaded, every area is coloured by class
    // and the small ones are hatched, as on the interactive map.
    assert.equal(await mobile.evaluate(() => document.body.dataset.map), 'static');
    assert.equal(await mobile.evaluate(() => performance.getEntriesByType('resource').filter((r) => r.name.includes('maplibre-gl.mjs')).length), 0, `${language}: MapLibre is not loaded for a phone's first view`);
    const fills = await mobile.locator('#map svg path[data-area]').evaluateAll((paths) => paths.map((p) => p.getAttribute('fill')));
    assert.equal(fills.length, 90, `${language}: 90 areas drawn`);
    assert.ok(new Set(fills).size >= 5, `${language}: the areas coloured by class (${[...new Set(fills)]})`);
    assert.equal(await mobile.locator('#map svg .hatched path').count(), small, `${language}: the small areas hatched`);
    assert.ok(await mobile.locator('#legend li').count() >= 5, `${language}: the legend has its classes`);
    for (const selector of ['#indicator', '#search', '#search-form button', '#language', '#map-interactive', '.layers .form-check', '#map-data summary']) {
      const box = await mobile.locator(selector).first().boundingBox();
      assert.ok(box.height >= 44, `${language}: ${selector} is ${box.height} px high`);
    }
    for (const selector of ['#indicator', '#search']) {
      const border = await mobile.locator(selector).evaluate((e) => { const s = getComputedStyle(e); return [s.borderTopStyle, s.borderLeftStyle, s.borderTopWidth]; });
      assert.deepEqual(border.slice(0, 2), ['solid', 'solid'], `${selector}: a visible border`);
      assert.notEqual(border[2], '0px');
    }
    await mobile.screenshot({ path: join(screenshotDir, `05-phone-${language}.png`), fullPage: false });
    // A tap on an area: its details open in a sheet at the bottom of the screen.
    const [point] = await sql('SELECT ST_XMin(ST_PointOnSurface(geometry)) AS lon, ST_YMin(ST_PointOnSurface(geometry)) AS lat FROM bologna.aree_statistiche WHERE codice_area_statistica = 10');
    const tapArea = async (what) => {
      await mobile.locator('#map').scrollIntoViewIfNeeded();
      const pixel = await mobile.evaluate(([lon, lat]) => window.cruscotto.project([lon, lat]), [point.lon, point.lat]);
      const box = await mobile.locator('#map').boundingBox();
      await mobile.touchscreen.tap(box.x + pixel.x, box.y + pixel.y);
      await mobile.waitForFunction(() => document.body.dataset.area === '10' && document.body.dataset.sheet === 'open', null, { timeout: TIMEOUT });
      const sheet = await mobile.locator('#area-panel').boundingBox();
      assert.ok(Math.abs(sheet.y + sheet.height - 844) <= 1, `${language}, ${what}: the sheet sits at the bottom of the screen (${JSON.stringify(sheet)})`);
      assert.equal(await mobile.locator('#area-name').textContent(), (await sql('SELECT area_statistica FROM residenti_offline_attesi WHERE codice_area_statistica = 10'))[0].area_statistica);
      assert.ok((await mobile.locator('#sheet-close').boundingBox()).height >= 44);
    };
    await tapArea('drawing');
    await mobile.screenshot({ path: join(screenshotDir, `06-phone-sheet-${language}.png`), fullPage: false });
    await mobile.click('#sheet-close');
    await mobile.waitForFunction(() => document.body.dataset.sheet === 'closed', null, { timeout: TIMEOUT });
    // The interactive map when asked for: same colours, one finger scrolls the page and two move
    // the map, zoom buttons of 44 px; a tap opens the sheet and leaves no tooltip.
    await mobile.locator('#map-interactive').tap();
    await mobile.waitForFunction(() => document.body.dataset.upgraded === 'ready', null, { timeout: TIMEOUT });
    assert.equal(await mobile.evaluate(() => document.body.dataset.map), 'interactive');
    assert.ok(await mobile.evaluate(() => window.cruscotto.map.map.cooperativeGestures.isEnabled()), 'cooperative gestures on a touch screen');
    assert.equal(await mobile.locator('#map-interactive').isHidden(), true, 'the button goes once the map is interactive');
    for (const selector of ['.maplibregl-ctrl-zoom-in', '.maplibregl-ctrl-zoom-out']) {
      const box = await mobile.locator(selector).boundingBox();
      assert.ok(box.height >= 44, `${language}: ${selector} is ${box.height} px high`);
    }
    const states = await mobile.evaluate(() => window.cruscotto.map.features.map((f) => [String(f.properties.codice_area_statistica), window.cruscotto.map.map.getFeatureState({ source: 'areas', id: f.properties.codice_area_statistica }).colour]));
    assert.deepEqual(states.map(([, colour]) => colour), fills, `${language}: the interactive map has the drawing's colours`);
    await mobile.evaluate(() => window.cruscotto.map.idle());
    await tapArea('interactive map');
    assert.equal(await mobile.locator('.area-tooltip').count(), 0, 'no tooltip left after a tap');
    await mobile.click('#sheet-close');
    await mobile.waitForFunction(() => document.body.dataset.sheet === 'closed', null, { timeout: TIMEOUT });
    await accessibility(mobile, `the dashboard on a phone (${language})`);
  }
  await mobile.goto(`${base}/assets/sql.html`, { waitUntil: 'load' });
  await mobile.click('#run');
  await mobile.waitForSelector('#result table', { timeout: TIMEOUT });
  assert.ok(await mobile.evaluate(() => document.documentElement.scrollWidth <= window.innerWidth), 'no horizontal overflow on the SQL page at 390 px');
  await mobile.screenshot({ path: join(screenshotDir, '07-sql-phone.png'), fullPage: true });
  step('phone: map first as a drawing without MapLibre, the interactive map on request with cooperative gestures, bottom sheet, 44 px targets, no overflow (Italian and English, SQL page)');
  await phone.close();

  // The "Pianifica" view: from the menu, the default scenario is solved (20 points, proven
  // optimal) and drawn with its radius circles; the table, the curve and the exports agree with
  // the plan the API kept; the slider re-solves for fewer points.
  await page.goto(`${base}/?dashboard=divario_digitale`, { waitUntil: 'domcontentloaded' });
  await page.click('#nav-plan');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.plan), null, { timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => document.body.dataset.plan), 'ready', await page.locator('#plan-status').textContent());
  assert.equal(await page.evaluate(() => document.body.dataset.planSites), '20');
  assert.equal(await page.locator('#plan-map g.new-site').count(), 20, '20 chosen points on the map');
  assert.equal(await page.locator('#plan-map circle.new-radius').count(), 20, 'a radius circle for each');
  assert.equal(await page.locator('#plan-table tbody tr').count(), 20, '20 rows in the table of chosen sites');
  assert.equal(await page.locator('#plan-curve circle[data-k]').count(), 21, 'the curve from 0 to 20 points');
  assert.equal(await page.locator('#plan-method').getAttribute('data-optimal'), 'true');
  assert.match(await page.locator('#plan-method').textContent(), /soluzione ottima dimostrata/);
  const planId = await page.evaluate(() => document.body.dataset.planId);
  const kept = await (await fetch(`${base}/api/v1/plans/${planId}`)).json();
  const shownSites = await page.locator('#plan-table tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.site));
  assert.deepEqual(shownSites, kept.result.chosen.map((c) => c.id), 'the table lists the kept plan\'s sites in rank order');
  assert.equal(kept.request.radius_m, 800);
  const newlyCovered = await page.locator('#plan-map path[data-covered="new"]').count();
  assert.equal(newlyCovered, kept.result.demand.filter((d) => d.covered_by === 'new' && d.weight > 0).length, 'the areas drawn as newly covered are the plan\'s');
  assert.ok(newlyCovered > 0);
  assert.match(page.url(), /view=pianifica/);
  const csvHref = await page.locator('[data-export="csv"]').getAttribute('href');
  const csvText = await (await fetch(`${base}${csvHref}`)).text();
  assert.equal(csvText.split('\n').filter((l) => l.startsWith('nuovo,')).length, 20, 'the CSV export has the 20 sites');
  const geoHref = await page.locator('[data-export="geojson"]').getAttribute('href');
  const geo = await (await fetch(`${base}${geoHref}`)).json();
  assert.equal(geo.features.filter((f) => f.properties.role === 'new').length, 20);
  await page.screenshot({ path: join(screenshotDir, '08-pianifica.png'), fullPage: true });
  await accessibility(page, 'the Pianifica view');
  // The slider: 5 points.
  await page.locator('#plan-k').fill('5');
  await page.locator('#plan-k').dispatchEvent('change');
  await page.waitForFunction(() => document.body.dataset.plan === 'ready' && document.body.dataset.planSites === '5', null, { timeout: TIMEOUT });
  assert.equal(await page.locator('#plan-map g.new-site').count(), 5);
  assert.match(page.url(), /k=5/);
  step(`Pianifica: default scenario solved, 20 points proven optimal on the map with their circles, ${newlyCovered} areas newly covered, table, curve and CSV/GeoJSON exports match plan ${planId}; the slider re-solves for 5`);

  // The "Impatto" view: from the menu, the estimate for the facilitation points opened, as the
  // API computes it, in plain language with its interval; the event-study chart with the start
  // marked; the covered and comparison areas on the map; the data said to be simulated; English.
  await page.goto(`${base}/?dashboard=divario_digitale`, { waitUntil: 'domcontentloaded' });
  await page.click('#nav-impact');
  await page.waitForFunction(() => ['ready', 'error'].includes(document.body.dataset.impact), null, { timeout: TIMEOUT });
  assert.equal(await page.evaluate(() => document.body.dataset.impact), 'ready', await page.locator('#impact-result').textContent());
  assert.match(page.url(), /view=impatto/);
  const impact = await (await fetch(`${base}/api/v1/impact`)).json();
  const readingIt = (await page.locator('#impact-reading').textContent()).trim();
  assert.equal(readingIt, impact.reading.it);
  assert.match(readingIt, /^[+−]?\d+,\d punti percentuali, intervallo −?\d+,\d–−?\d+,\d\./, readingIt);
  assert.equal(Number(await page.locator('#impact-reading').getAttribute('data-estimate')), impact.estimate.estimate);
  assert.equal(await page.locator('#impact-chart g.point').count(), impact.event_study.length, 'one point per month of the event study');
  assert.ok(impact.event_study.some((p) => p.month < 0) && impact.event_study.some((p) => p.month >= 0), 'months before and after');
  assert.equal(await page.locator('#impact-chart line.start').count(), 1, 'the start is marked');
  assert.equal(await page.locator('#impact-chart g.point.after').count(), impact.event_study.filter((p) => p.month >= 0).length);
  const coveredIds = impact.areas.filter((a) => a.role === 'covered').map((a) => String(a.codice_area_statistica)).sort();
  const drawnCovered = (await page.locator('#impact-map path[data-role="covered"]').evaluateAll((paths) => paths.map((p) => p.dataset.area))).sort();
  assert.deepEqual(drawnCovered, coveredIds, 'the covered areas on the map are the estimate\'s');
  assert.ok(coveredIds.length > 0);
  assert.equal(await page.locator('#impact-map path[data-role="comparison"]').count(), impact.comparison_areas);
  assert.equal(await page.locator('#impact-map circle.site').count(), impact.interventions.filter((i) => i.selected).length);
  assert.equal(impact.simulated, true);
  assert.equal(await page.locator('#impact-simulated [data-simulated="true"]').count(), 1, 'the data are said to be simulated');
  await page.screenshot({ path: join(screenshotDir, '09-impatto.png'), fullPage: true });
  await accessibility(page, 'the Impatto view');
  await page.click('#language');
  await page.waitForFunction(() => document.body.dataset.impact === 'ready' && document.querySelector('#impact-reading')?.lang === 'en', null, { timeout: TIMEOUT });
  const readingEn = (await page.locator('#impact-reading').textContent()).trim();
  assert.equal(readingEn, impact.reading.en);
  assert.match(readingEn, /^[+−]?\d+\.\d percentage points, interval −?\d+\.\d–−?\d+\.\d\./, readingEn);
  // One intervention alone: the map shows only its site.
  await page.selectOption('#impact-interventions', 'villa-spada-2023');
  await page.waitForFunction(() => document.body.dataset.impact === 'ready' && document.querySelectorAll('#impact-map circle.site').length === 1, null, { timeout: TIMEOUT });
  assert.match(page.url(), /interventions=villa-spada-2023/);
  step(`Impatto: "${readingIt.split('.')[0]}" as the API estimates it, ${impact.event_study.length} months in the event study with the start marked, ${coveredIds.length} covered and ${impact.comparison_areas} comparison areas on the map, simulated data labelled; English; one intervention alone`);

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
