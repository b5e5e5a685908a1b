// The "Impatto" view: did the interventions make a difference? Reads GET /api/v1/impact (a matched
// difference-in-differences over the service logs, with a 95% bootstrap interval) and shows the
// reading in plain language, the event-study chart (months before and after, the start marked),
// and the covered and comparison areas on a map of the city's areas.

import { lang, formatNumber } from './i18n.mjs';
import { getJson, el, simulatedBadge } from './util.mjs';

const SVG = 'http://www.w3.org/2000/svg';

const TEXT = {
  heading: ['Gli interventi hanno fatto la differenza?', 'Did the interventions make a difference?'],
  intervention: ['Interventi', 'Interventions'],
  all_openings: ['Tutti i punti aperti (insieme)', 'All the points opened (together)'],
  metric: ['Misura', 'Measure'],
  quota_online: ['Richieste fatte online (%)', 'Requests made online (%)'],
  accessi_spid_cie: ['Accessi SPID/CIE ogni 1.000 adulti', 'SPID/CIE logins per 1,000 adults'],
  radius: ['Raggio', 'Radius'],
  loading: ['Stima in corso…', 'Estimating…'],
  chart: ['Effetto mese per mese, rispetto alle aree di confronto', 'Effect month by month, against the comparison areas'],
  chart_note: ['Mesi dall’avvio (0 = mese di avvio, linea tratteggiata); barre: intervallo al 95%. Prima dell’avvio i valori dovrebbero restare vicini a zero.',
    'Months from the start (0 = the month it started, dashed line); bars: 95% interval. Before the start the values should stay near zero.'],
  start: ['avvio', 'start'],
  month: ['Mese dall’avvio', 'Month from the start'],
  estimate: ['Stima', 'Estimate'],
  interval: ['Intervallo al 95%', '95% interval'],
  areas_n: ['Aree coperte osservate', 'Covered areas observed'],
  table: ['Tabella dei valori del grafico', 'Table of the chart’s values'],
  map: ['Aree coperte e aree di confronto', 'Covered areas and comparison areas'],
  covered: ['Coperte (centro entro il raggio)', 'Covered (centre within the radius)'],
  comparison: ['Di confronto (simili, non coperte)', 'Comparison (similar, not covered)'],
  other: ['Coperte da altri interventi (escluse)', 'Covered by other interventions (left out)'],
  pool: ['Altre aree', 'Other areas'],
  site: ['Luogo dell’intervento', 'Place of the intervention'],
  method: ['Metodo', 'Method'],
  method_text: ['Differenza nelle differenze: per ogni area coperta, la variazione dopo l’avvio rispetto alla media dei mesi prima, meno quella delle aree non coperte più simili prima dell’avvio (stessa quota online, quota di over 80 e di adulti offline attesi). Intervallo: bootstrap a blocchi sulle aree.',
    'Difference in differences: for each covered area, the change after the start against the mean of the months before, less that of the most similar areas not covered before the start (same online share, share over 80 and of expected offline adults). Interval: block bootstrap over areas.'],
  simulated_note: ['I log dei servizi di questa installazione sono simulati: la stima mostra il metodo, non un effetto reale.',
    'This installation’s service logs are simulated: the estimate shows the method, not a real effect.'],
  error: ['La stima non è disponibile', 'The estimate is not available'],
  kinds: { apertura_punto: ['apertura punto', 'point opened'], chiusura_punto: ['chiusura punto', 'point closed'], corso: ['corso', 'course'], volontari: ['volontari', 'volunteers'] },
};

function tr(key) {
  return TEXT[key][lang() === 'en' ? 1 : 0];
}

function kind(k) {
  return TEXT.kinds[k]?.[lang() === 'en' ? 1 : 0] ?? k;
}

function svg(tag, attributes = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes)) if (value !== undefined && value !== null) node.setAttribute(key, value);
  for (const child of children) if (child) node.append(child);
  return node;
}

const choice = new URLSearchParams(window.location.search);
const selection = {
  interventions: choice.get('interventions') ?? '',
  metric: choice.get('metric') === 'accessi_spid_cie' ? 'accessi_spid_cie' : 'quota_online',
  radius: ['500', '800', '1000'].includes(choice.get('radius')) ? choice.get('radius') : '800',
};

function remember() {
  const url = new URL(window.location.href);
  for (const key of ['interventions', 'metric', 'radius']) url.searchParams.delete(key);
  if (selection.interventions) url.searchParams.set('interventions', selection.interventions);
  if (selection.metric !== 'quota_online') url.searchParams.set('metric', selection.metric);
  if (selection.radius !== '800') url.searchParams.set('radius', selection.radius);
  window.history.replaceState(null, '', url);
}

let areasGeojson = null;

/** Draw the view into `container`; `definition` is the dashboard's, for its map of areas. */
export async function showImpact(container, { definition, dashboard }) {
  document.body.dataset.impact = 'loading';
  container.replaceChildren(el('h2', { id: 'impact-heading', class: 'h4', text: tr('heading') }),
    el('div', { id: 'impact-controls', class: 'row g-2 align-items-end mb-3' }),
    el('div', { id: 'impact-result', 'aria-live': 'polite' }, el('p', { text: tr('loading') })));
  let report;
  try {
    report = await load();
  } catch (error) {
    document.getElementById('impact-result').replaceChildren(el('div', { class: 'alert alert-warning', id: 'impact-error', text: `${tr('error')}: ${error.message}` }));
    renderControls(container, null, definition, dashboard);
    document.body.dataset.impact = 'error';
    return;
  }
  renderControls(container, report, definition, dashboard);
  await renderReport(report, definition, dashboard);
  document.body.dataset.impact = 'ready';
}

async function load() {
  const query = new URLSearchParams({ metric: selection.metric, radius: selection.radius });
  if (selection.interventions) query.set('interventions', selection.interventions);
  return getJson(`/api/v1/impact?${query}`);
}

function renderControls(container, report, definition, dashboard) {
  const controls = container.querySelector('#impact-controls');
  const redraw = () => { remember(); showImpact(container, { definition, dashboard }); };
  const interventions = report?.interventions ?? [];
  const group = el('select', { id: 'impact-interventions', class: 'form-select', onchange: (e) => { selection.interventions = e.target.value; redraw(); } },
    el('option', { value: '', text: tr('all_openings') }),
    ...interventions.map((i) => el('option', { value: i.id, text: `${i.nome} (${kind(i.tipo)}, ${i.inizio})` })));
  group.value = selection.interventions;
  const metric = el('select', { id: 'impact-metric', class: 'form-select', onchange: (e) => { selection.metric = e.target.value; redraw(); } },
    ...['quota_online', 'accessi_spid_cie'].map((m) => el('option', { value: m, text: tr(m) })));
  metric.value = selection.metric;
  const radius = el('select', { id: 'impact-radius', class: 'form-select', onchange: (e) => { selection.radius = e.target.value; redraw(); } },
    ...['500', '800', '1000'].map((r) => el('option', { value: r, text: `${r} m` })));
  radius.value = selection.radius;
  controls.replaceChildren(
    el('div', { class: 'col-md-6' }, el('label', { for: 'impact-interventions', class: 'form-label fw-semibold', text: tr('intervention') }), group),
    el('div', { class: 'col-md-4' }, el('label', { for: 'impact-metric', class: 'form-label fw-semibold', text: tr('metric') }), metric),
    el('div', { class: 'col-md-2' }, el('label', { for: 'impact-radius', class: 'form-label fw-semibold', text: tr('radius') }), radius));
}

async function renderReport(report, definition, dashboard) {
  const reading = report.reading[lang() === 'en' ? 'en' : 'it'];
  const summary = el('div', { class: 'card card-bg p-3 mb-3' },
    el('p', { id: 'impact-reading', class: 'lead mb-1', lang: lang(), dataset: { estimate: report.estimate.estimate, low: report.estimate.low, high: report.estimate.high } }, reading),
    report.simulated ? el('p', { id: 'impact-simulated', class: 'small mb-0' }, simulatedBadge(), ' ', tr('simulated_note')) : null);
  const chart = el('section', { class: 'col-lg-7', 'aria-labelledby': 'impact-chart-heading' },
    el('h3', { id: 'impact-chart-heading', class: 'h5', text: tr('chart') }),
    eventChart(report),
    el('p', { class: 'small text-muted', text: tr('chart_note') }),
    el('details', {}, el('summary', { text: tr('table') }), eventTable(report)));
  const map = el('section', { class: 'col-lg-5', 'aria-labelledby': 'impact-map-heading' },
    el('h3', { id: 'impact-map-heading', class: 'h5', text: tr('map') }),
    await areaMap(report, definition, dashboard),
    legend());
  const method = el('details', { class: 'mt-3' }, el('summary', { text: tr('method') }), el('p', { class: 'small', text: tr('method_text') }),
    el('p', { class: 'small', text: `${report.months[0]} – ${report.months[1]}; ${report.covered_areas} / ${report.comparison_areas}; bootstrap ${report.replications}, seed ${report.seed}` }));
  document.getElementById('impact-result').replaceChildren(summary, el('div', { class: 'row g-3' }, chart, map), method);
}

function eventChart(report) {
  const series = report.event_study;
  const width = 640; const height = 300;
  const pad = { left: 48, right: 12, top: 12, bottom: 36 };
  const months = series.map((p) => p.month);
  const values = series.flatMap((p) => [p.low, p.high, p.estimate]).filter(Number.isFinite).concat([0]);
  const [x0, x1] = [Math.min(...months, -1), Math.max(...months, 1)];
  let [y0, y1] = [Math.min(...values), Math.max(...values)];
  const margin = (y1 - y0) * 0.08 || 1; y0 -= margin; y1 += margin;
  const x = (m) => pad.left + ((m - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const y = (v) => pad.top + ((y1 - v) / (y1 - y0)) * (height - pad.top - pad.bottom);
  const chart = svg('svg', { id: 'impact-chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-labelledby': 'impact-chart-heading', class: 'impact-chart' });
  const step = Math.max(1, Math.ceil((y1 - y0) / 6));
  for (let v = Math.ceil(y0 / step) * step; v <= y1; v += step) {
    chart.append(svg('line', { class: 'grid', x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }),
      svg('text', { class: 'tick', x: pad.left - 6, y: y(v) + 4, 'text-anchor': 'end' }, document.createTextNode(formatNumber(v, 0))));
  }
  chart.append(svg('line', { class: 'zero', x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }));
  chart.append(svg('line', { class: 'start', x1: x(-0.5), x2: x(-0.5), y1: pad.top, y2: height - pad.bottom }),
    svg('text', { class: 'tick start-label', x: x(-0.5) + 4, y: pad.top + 12 }, document.createTextNode(tr('start'))));
  for (const m of months) chart.append(svg('text', { class: 'tick', x: x(m), y: height - pad.bottom + 16, 'text-anchor': 'middle' }, document.createTextNode(String(m))));
  chart.append(svg('text', { class: 'tick', x: (pad.left + width - pad.right) / 2, y: height - 4, 'text-anchor': 'middle' }, document.createTextNode(tr('month'))));
  for (const p of series) {
    const after = p.month >= 0;
    const group = svg('g', { class: `point${after ? ' after' : ''}`, 'data-month': p.month, 'data-estimate': p.estimate });
    if (Number.isFinite(p.low) && Number.isFinite(p.high)) group.append(svg('line', { class: 'bar', x1: x(p.month), x2: x(p.month), y1: y(p.low), y2: y(p.high) }));
    group.append(svg('circle', { cx: x(p.month), cy: y(p.estimate), r: 4.5 }));
    group.append(svg('title', {}, document.createTextNode(`${p.month}: ${formatNumber(p.estimate, 1)} (${formatNumber(p.low, 1)}–${formatNumber(p.high, 1)})`)));
    chart.append(group);
  }
  return chart;
}

function eventTable(report) {
  const head = el('tr', {}, ...['month', 'estimate', 'interval', 'areas_n'].map((k) => el('th', { scope: 'col', text: tr(k) })));
  const rows = report.event_study.map((p) => el('tr', { dataset: { month: p.month } },
    el('th', { scope: 'row', text: String(p.month) }),
    el('td', { text: formatNumber(p.estimate, 1) }),
    el('td', { text: `${formatNumber(p.low, 1)} – ${formatNumber(p.high, 1)}` }),
    el('td', { text: String(p.areas) })));
  return el('div', { class: 'table-responsive' }, el('table', { class: 'table table-sm', id: 'impact-table' }, el('thead', {}, head), el('tbody', {}, ...rows)));
}

async function areaMap(report, definition, dashboard) {
  const areas = definition?.dashboard?.map?.areas;
  if (!areas) return el('p', { class: 'small text-muted', text: '—' });
  areasGeojson ??= await getJson(`/api/v1/dashboards/${encodeURIComponent(dashboard)}/layers/${encodeURIComponent(areas.query)}`).catch(() => null);
  if (!areasGeojson) return el('p', { class: 'small text-muted', text: '—' });
  const role = new Map(report.areas.map((a) => [String(a.codice_area_statistica), a]));
  const rings = [];
  for (const f of areasGeojson.features) {
    const g = f.geometry;
    if (!g) continue;
    const polygons = g.type === 'Polygon' ? [g.coordinates] : g.type === 'MultiPolygon' ? g.coordinates : [];
    rings.push([f, polygons]);
  }
  const all = rings.flatMap(([, ps]) => ps.flat(3));
  const lons = []; const lats = [];
  for (let i = 0; i < all.length; i += 2) { lons.push(all[i]); lats.push(all[i + 1]); }
  const [minLon, maxLon, minLat, maxLat] = [Math.min(...lons), Math.max(...lons), Math.min(...lats), Math.max(...lats)];
  const k = Math.cos(((minLat + maxLat) / 2) * Math.PI / 180);
  const width = 600; const scale = width / ((maxLon - minLon) * k); const height = (maxLat - minLat) * scale;
  const px = ([lon, lat]) => [((lon - minLon) * k * scale).toFixed(1), ((maxLat - lat) * scale).toFixed(1)];
  const map = svg('svg', { id: 'impact-map', viewBox: `0 0 ${width} ${height.toFixed(0)}`, role: 'img', 'aria-labelledby': 'impact-map-heading', class: 'impact-map' });
  for (const [f, polygons] of rings) {
    const id = String(f.properties[areas.id]);
    const info = role.get(id);
    const d = polygons.map((poly) => poly.map((ring) => `M${ring.map((c) => px(c).join(',')).join('L')}Z`).join('')).join('');
    const name = f.properties[areas.name] ?? id;
    map.append(svg('path', { d, class: `area ${info?.role ?? 'pool'}`, 'data-area': id, 'data-role': info?.role ?? 'pool' },
      svg('title', {}, document.createTextNode(`${name}: ${tr(info?.role ?? 'pool')}${info?.from ? ` (${info.from})` : ''}`))));
  }
  for (const i of report.interventions.filter((i) => i.selected)) {
    const [cx, cy] = px([i.lon, i.lat]);
    map.append(svg('circle', { class: 'site', cx, cy, r: 5, 'data-intervention': i.id }, svg('title', {}, document.createTextNode(i.nome))));
  }
  return map;
}

function legend() {
  return el('ul', { class: 'list-unstyled small impact-legend', id: 'impact-legend' },
    ...['covered', 'comparison', 'other', 'pool', 'site'].map((r) => el('li', {}, el('span', { class: `swatch ${r}`, 'aria-hidden': 'true' }), ` ${tr(r)}`)));
}
