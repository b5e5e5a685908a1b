// The dashboard page: reads the dashboard definition from /api/v1/dashboards/{name}, draws the
// choropleth first, then point layers and panels. The URL holds the state (dashboard, indicator,
// selected area, language, visible layers) so a view can be shared.

import { setLanguage, t, pick, formatNumber, lang } from './i18n.mjs';
import { getJson, el, dataTable, freshness, csvLink, unavailableReason, simulatedBadge, columnLabels, cellText } from './util.mjs';
import { renderLegend } from './shapes.mjs';
import { renderPanel, renderSeries, disposeCharts } from './panels.mjs';

const params = new URLSearchParams(window.location.search);
const state = {
  dashboard: params.get('dashboard'),
  indicator: params.get('indicator'),
  area: params.get('area'),
  lang: params.get('lang') === 'en' ? 'en' : 'it',
  layers: params.has('layers') ? new Set(params.get('layers').split(',').filter(Boolean)) : null,
  compare: params.get('compare'),
  // The "Pianifica" view (plan.mjs) and its choices.
  view: params.get('view'),
  scenario: params.get('scenario'),
  demand: params.get('demand'),
  radius: params.get('radius'),
  k: params.get('k'),
};
const timings = { start: performance.now() };
/** The map is first drawn as SVG, without MapLibre's code (290 KiB, and long tasks on a busy or
 * slow processor); MapLibre is loaded when the map is used: on a phone or a small screen when
 * asked for (a button, two fingers on the map), elsewhere as soon as the pointer or the keyboard
 * focus reaches the map. */
const PHONE = '(pointer: coarse), (max-width: 767.98px)';
const onPhone = window.matchMedia(PHONE).matches;
let interactiveModule = null;
const dataCache = new Map();
let definition = null;
let choropleth = null;
let shownRows = [];

function rowsOf(query) {
  if (!dataCache.has(query)) dataCache.set(query, getJson(`/api/v1/dashboards/${encodeURIComponent(state.dashboard)}/data/${encodeURIComponent(query)}`));
  return dataCache.get(query);
}

function saveState() {
  const next = new URLSearchParams();
  next.set('dashboard', state.dashboard);
  if (state.indicator) next.set('indicator', state.indicator);
  if (state.area !== null && state.area !== undefined) next.set('area', state.area);
  if (state.lang === 'en') next.set('lang', 'en');
  if (state.layers) next.set('layers', [...state.layers].join(','));
  if (state.compare) next.set('compare', state.compare);
  if (state.view === 'pianifica') {
    next.set('view', 'pianifica');
    for (const key of ['scenario', 'demand', 'radius', 'k']) if (state[key]) next.set(key, state[key]);
  }
  if (state.view === 'impatto') next.set('view', 'impatto');
  window.history.replaceState(null, '', `?${next}`);
}

const map = () => definition.dashboard.map;
const info = (query) => definition.queries[query];
const indicatorKey = (indicator) => `${indicator.query}:${indicator.value}`;
const areaIdKey = (indicator) => indicator.id ?? map().areas.id;

function indicatorLabel(indicator) {
  const metadata = info(indicator.query)?.metadata;
  return indicator.label ? pick(indicator, 'label') : columnLabels(metadata).get(indicator.value)?.label ?? pick(metadata, 'title');
}

/** The unit: the indicator's own, else its column's declared one, else the query's. */
function indicatorUnit(indicator) {
  const metadata = info(indicator.query)?.metadata;
  return indicator.unit ? pick(indicator, 'unit') : columnLabels(metadata).get(indicator.value)?.unit ?? pick(metadata, 'unit');
}

function currentIndicator() {
  const available = map().indicators.filter((i) => info(i.query)?.ok);
  return available.find((i) => indicatorKey(i) === state.indicator) ?? available.find((i) => i.default) ?? available[0];
}

async function main() {
  setLanguage(state.lang);
  // A dashboard named in the URL is fetched beside the list: a shared view waits for one round
  // trip, not two. One that does not exist falls back to the first dashboard listed.
  const requested = state.dashboard ? getJson(`/api/v1/dashboards/${encodeURIComponent(state.dashboard)}`).catch(() => null) : null;
  const dashboards = await getJson('/api/v1/dashboards');
  if (!dashboards.length) throw new Error('no dashboards configured (dashboards/*.toml)');
  const known = dashboards.some((d) => d.name === state.dashboard);
  if (!known) state.dashboard = dashboards[0].name;
  definition = (known && (await requested)) || (await getJson(`/api/v1/dashboards/${encodeURIComponent(state.dashboard)}`));
  renderChrome(dashboards);
  if (state.view === 'pianifica') {
    await showPlanView();
    return;
  }
  if (state.view === 'impatto') {
    await showImpactView();
    return;
  }
  if (map()) {
    document.getElementById('map').setAttribute('aria-label', pick(definition.dashboard, 'title'));
    choropleth = await createChoropleth('static');
    await showIndicator();
    timings.choropleth = performance.now();
    document.body.dataset.choropleth = 'ready';
    if (state.area !== null) await selectArea(state.area, { zoom: true });
    layersLoaded = loadPointLayers();
  } else {
    document.getElementById('map-row').hidden = true;
  }
  renderPanels();
  document.body.dataset.panels = 'requested';
}

/** The map: `static` (SVG, no map library) or `interactive` (MapLibre). */
async function createChoropleth(kind) {
  const areas = map().areas;
  const container = document.getElementById('map');
  const options = {
    areasUrl: `/api/v1/dashboards/${encodeURIComponent(state.dashboard)}/layers/${encodeURIComponent(areas.query)}`,
    idKey: areas.id,
    nameKey: areas.name,
    basemap: map().basemap,
    populationKey: areas.population,
    minPopulation: areas.min_population,
    groupKey: areas.group_labels,
    onSelect: (id) => selectArea(id, { fromMap: true }),
  };
  const button = document.getElementById('map-interactive');
  const help = document.getElementById('map-help');
  help.dataset.i18n = kind === 'static' && onPhone ? 'map_help_static' : 'map_help';
  help.textContent = t(help.dataset.i18n);
  let created;
  if (kind === 'static') {
    const { StaticChoropleth } = await import('./svgmap.mjs');
    created = new StaticChoropleth(container, options);
    button.hidden = false;
    button.onclick = () => makeInteractive();
    // Two fingers on the drawing: the user wants to move the map.
    container.addEventListener('touchstart', (event) => { if (event.touches.length > 1) makeInteractive(); }, { passive: true });
    if (!onPhone) {
      // A mouse over the map, the wheel on it, or the keyboard focus on it.
      container.addEventListener('pointerenter', (event) => { if (event.pointerType !== 'touch') makeInteractive(); });
      container.addEventListener('wheel', () => makeInteractive(), { passive: true });
      container.addEventListener('focusin', () => makeInteractive());
    }
  } else {
    // Its styles apply from now on (index.html loads them with `media="not all"`: not blocking).
    const styles = document.querySelector('link[data-maplibre-css]');
    if (styles) styles.media = 'all';
    const module = await (interactiveModule ??= import('./map.mjs'));
    container.replaceChildren();
    created = new module.Choropleth(container, options);
    button.hidden = true;
  }
  document.body.dataset.map = kind;
  window.cruscotto.map = created;
  return created;
}

/** From the drawing to the interactive map, keeping the indicator, the area and the layers. */
let upgrading = null;
let layersLoaded = Promise.resolve();
function makeInteractive() {
  upgrading ??= (async () => {
    document.getElementById('map-interactive').disabled = true;
    await layersLoaded.catch(() => {});
    const hadFocus = document.getElementById('map').contains(document.activeElement);
    choropleth = await createChoropleth('interactive');
    if (hadFocus) choropleth.map.getCanvas().focus();
    await showIndicator();
    if (state.area !== null) await selectArea(state.area, { zoom: true });
    layersLoaded = loadPointLayers();
    await layersLoaded;
    document.body.dataset.upgraded = 'ready';
  })();
  return upgrading;
}

/** The "Pianifica" view instead of the dashboard's map and panels. */
async function showPlanView() {
  document.getElementById('map-row').hidden = true;
  document.getElementById('panels').closest('section').hidden = true;
  document.getElementById('title').textContent = t('plan_title');
  document.getElementById('description').textContent = t('plan_description');
  document.title = `${t('plan_title')} — cruscotto`;
  const container = document.getElementById('planner');
  container.hidden = false;
  const { showPlanner } = await import('./plan.mjs');
  await showPlanner(container, { state, saveState });
}

/** The "Impatto" view (impact.mjs) instead of the dashboard's map and panels. */
async function showImpactView() {
  document.getElementById('map-row').hidden = true;
  document.getElementById('panels').closest('section').hidden = true;
  document.getElementById('title').textContent = t('impact_title');
  document.getElementById('description').textContent = t('impact_description');
  document.title = `${t('impact_title')} — cruscotto`;
  const container = document.getElementById('impact');
  container.hidden = false;
  const { showImpact } = await import('./impact.mjs');
  await showImpact(container, { definition, dashboard: state.dashboard });
}

function renderChrome(dashboards) {
  const nav = document.getElementById('dashboards');
  const planning = state.view === 'pianifica' || state.view === 'impatto';
  const planHref = `?dashboard=${encodeURIComponent(state.dashboard)}&view=pianifica${state.lang === 'en' ? '&lang=en' : ''}`;
  const impactHref = `?dashboard=${encodeURIComponent(state.dashboard)}&view=impatto${state.lang === 'en' ? '&lang=en' : ''}`;
  const impacting = state.view === 'impatto';
  const impactItem = el('li', { class: 'nav-item' }, el('a', { class: `nav-link${impacting ? ' active' : ''}`, href: impactHref, id: 'nav-impact', 'aria-current': impacting ? 'page' : undefined, text: t('impact_nav') }));
  const planItem = el('li', { class: 'nav-item' }, el('a', { class: `nav-link${state.view === 'pianifica' ? ' active' : ''}`, href: planHref, id: 'nav-plan', 'aria-current': state.view === 'pianifica' ? 'page' : undefined, text: t('plan_nav') }));
  nav.replaceChildren(...dashboards.map((d) => {
    const current = d.name === state.dashboard && !planning;
    const href = `?dashboard=${encodeURIComponent(d.name)}${state.lang === 'en' ? '&lang=en' : ''}`;
    return el('li', { class: 'nav-item' }, el('a', { class: `nav-link${current ? ' active' : ''}`, href, 'aria-current': current ? 'page' : undefined, dataset: { dashboard: d.name }, text: pick(d, 'title') }));
  }), planItem, impactItem);
  if (!planning) {
    document.getElementById('title').textContent = pick(definition.dashboard, 'title');
    document.getElementById('description').textContent = pick(definition.dashboard, 'description');
    document.title = `${pick(definition.dashboard, 'title')} — cruscotto`;
  }
  const button = document.getElementById('language');
  button.textContent = t('language');
  button.lang = state.lang === 'en' ? 'it' : 'en';
  button.onclick = () => switchLanguage(state.lang === 'en' ? 'it' : 'en');
  if (map() && !planning) renderIndicatorPicker();
}

function renderIndicatorPicker() {
  const select = document.getElementById('indicator');
  const current = currentIndicator();
  select.replaceChildren(...map().indicators.map((indicator) => {
    const ok = info(indicator.query)?.ok;
    const label = `${indicatorLabel(indicator)}${ok ? '' : ` ${t('unavailable_suffix')}`}`;
    return el('option', { value: indicatorKey(indicator), disabled: !ok, selected: current && indicatorKey(indicator) === indicatorKey(current), text: label });
  }));
  select.onchange = async () => {
    state.indicator = select.value;
    saveState();
    await showIndicator();
    if (state.area !== null) await renderAreaPanel(state.area);
  };
  const unavailable = map().indicators.filter((i) => !info(i.query)?.ok);
  const box = document.getElementById('unavailable');
  box.replaceChildren();
  if (unavailable.length) {
    const seen = new Set();
    box.append(el('strong', { text: `${t('unavailable')}: ` }), ...unavailable.filter((i) => !seen.has(i.query) && seen.add(i.query)).map((i, n) =>
      el('span', { dataset: { unavailable: i.query } }, n ? '; ' : '', `${indicatorLabel(i)} — ${unavailableReason(info(i.query))}`)));
  }
}

async function showIndicator() {
  const indicator = currentIndicator();
  if (!indicator) return;
  state.indicator = indicatorKey(indicator);
  document.body.dataset.indicator = state.indicator;
  const metadata = info(indicator.query)?.metadata ?? {};
  const rows = await rowsOf(indicator.query);
  await choropleth.ready;
  const higherIsBetter = metadata.polarity === 'higher_is_better';
  const legend = choropleth.show(rows, {
    idKey: areaIdKey(indicator), valueKey: indicator.value, classes: indicator.classes, breaks: indicator.breaks,
    higherIsBetter, decimals: indicator.decimals, unit: indicatorUnit(indicator),
  });
  const polarity = metadata.polarity === 'higher_is_worse' ? t('higher_worse') : higherIsBetter ? t('higher_better') : '';
  renderLegend(document.getElementById('legend'), legend, [indicator.classes === 'fixed' ? t('classes_fixed') : t('classes_quantile'), polarity, info(indicator.query)?.freshness?.simulated ? t('simulated') : ''].filter(Boolean).join('; '));
  const version = indicator.version && rows[0]?.[indicator.version];
  const infoLine = document.getElementById('indicator-info');
  infoLine.replaceChildren(
    el('span', { text: `${indicatorUnit(indicator)}${version ? ` · ${t('method_version')} ${version}` : ''}. ` }),
    el('details', { class: 'd-inline' }, el('summary', { class: 'd-inline', text: t('method') }), el('span', { class: 'small', text: ` ${pick(metadata, 'description')} ${pick(metadata, 'method')}` })),
  );
  const weights = Object.keys(rows[0] ?? {}).filter((k) => /^peso_.+_pct$/.test(k));
  if (weights.length) {
    infoLine.append(el('p', { class: 'small mb-1 weights', dataset: { weights: weights.map((k) => `${k}=${rows[0][k]}`).join(',') } },
      `${t('weights')}: `, weights.map((k) => `${k.slice(5, -4)} ${formatNumber(rows[0][k], 1)}%`).join(', '), '.'));
  }
  infoLine.append(freshness(info(indicator.query), rows));
  document.getElementById('legend-unit').textContent = indicatorUnit(indicator) ? ` (${indicatorUnit(indicator)})` : '';
  shownRows = rows;
  renderMapTable(indicator, rows);
  renderTopAreas(indicator, rows);
  await choropleth.idle();
  timings.drawn ??= performance.now();
  document.body.dataset.drawn = state.indicator;
}

function renderMapTable(indicator, rows) {
  const areas = map().areas;
  const byId = new Map(rows.map((r) => [String(r[areaIdKey(indicator)]), r]));
  const tableRows = choropleth.features
    .map((f) => ({ id: f.properties[areas.id], name: f.properties[areas.name], value: byId.get(String(f.properties[areas.id]))?.[indicator.value] ?? null }))
    .sort((a, b) => String(a.name).localeCompare(String(b.name), 'it'));
  const table = dataTable(tableRows, [
    { key: 'name', label: pick(areas, 'label') || t('name') },
    { key: 'value', label: `${indicatorLabel(indicator)} (${indicatorUnit(indicator)})`, decimals: indicator.decimals },
  ], {
    caption: indicatorLabel(indicator),
    rowHeader: 'name',
    rowAction: { label: t('select'), render: (row) => el('button', { type: 'button', class: 'btn btn-link btn-xs p-0', 'aria-label': `${t('select')} ${row.name}`, onclick: () => selectArea(row.id, { zoom: true, focus: true }), text: t('select') }) },
  });
  const box = document.getElementById('map-table');
  box.replaceChildren(table, el('p', {}, csvLink(state.dashboard, indicator.query)));
}

/** The areas with the highest values of the indicator (lowest when higher is better), with their
 * residents and the dashboard's count (`[map.top]`), sortable by any column. */
let topSort = null;
async function renderTopAreas(indicator, rows) {
  const box = document.getElementById('top-areas');
  const areas = map().areas;
  const idKey = areaIdKey(indicator);
  const top = map().top;
  const counts = top && info(top.query)?.ok ? await rowsOf(top.query).catch(() => []) : [];
  const countOf = new Map(counts.map((r) => [String(r[top.id ?? areas.id]), r[top.value]]));
  const higherIsBetter = info(indicator.query)?.metadata?.polarity === 'higher_is_better';
  const features = new Map(choropleth.features.map((f) => [String(f.properties[areas.id]), f.properties]));
  const all = rows
    .map((r) => ({ id: String(r[idKey]), value: r[indicator.value], properties: features.get(String(r[idKey])) }))
    .filter((r) => r.properties && r.value !== null && Number.isFinite(r.value) && !choropleth.small.has(r.id))
    .map((r) => ({ id: r.id, name: r.properties[areas.name], value: r.value, residents: areas.population ? r.properties[areas.population] : null, count: countOf.get(r.id) ?? null }));
  const columns = [
    { key: 'name', label: pick(areas, 'label') || t('name') },
    { key: 'value', label: `${indicatorLabel(indicator)}${indicatorUnit(indicator) ? ` (${indicatorUnit(indicator)})` : ''}`, decimals: indicator.decimals },
    areas.population ? { key: 'residents', label: t('residents'), decimals: 0 } : null,
    top ? { key: 'count', label: pick(top, 'label'), decimals: 0 } : null,
  ].filter(Boolean);
  const sort = topSort ?? { key: 'value', descending: !higherIsBetter };
  const sorted = [...all].sort((a, b) => {
    const [x, y] = [a[sort.key], b[sort.key]];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    const order = typeof x === 'string' ? x.localeCompare(y, 'it') : x - y;
    return sort.descending ? -order : order;
  }).slice(0, 10);
  const head = el('tr', {}, columns.map((c) => el('th', { scope: 'col', 'aria-sort': sort.key === c.key ? (sort.descending ? 'descending' : 'ascending') : undefined },
    el('button', { type: 'button', dataset: { sort: c.key }, onclick: () => {
      topSort = { key: c.key, descending: sort.key === c.key ? !sort.descending : c.key !== 'name' };
      renderTopAreas(indicator, rows);
    } }, c.label, sort.key === c.key ? (sort.descending ? ' ▼' : ' ▲') : ''))));
  const body = sorted.map((r) => el('tr', { dataset: { area: r.id } },
    el('th', { scope: 'row' }, el('button', { type: 'button', class: 'btn btn-link btn-xs p-0 text-start', onclick: () => selectArea(r.id, { zoom: true, focus: true }), text: r.name })),
    columns.slice(1).map((c) => el('td', { class: 'text-end', text: cellText(r[c.key], c.decimals) }))));
  box.replaceChildren(
    el('h3', { class: 'h6', id: 'top-heading', text: higherIsBetter ? t('top_areas_low') : t('top_areas') }),
    el('div', { class: 'table-responsive' }, el('table', { class: 'table table-sm top-areas', 'aria-labelledby': 'top-heading' }, el('thead', {}, head), el('tbody', {}, body))),
  );
  document.body.dataset.top = indicatorKey(indicator);
}

async function selectArea(id, { zoom = false, focus = false, fromMap = false } = {}) {
  if (!choropleth) return;
  await choropleth.ready;
  const feature = choropleth.features.find((f) => String(f.properties[map().areas.id]) === String(id));
  if (!feature) return;
  state.area = String(id);
  saveState();
  choropleth.select(feature.properties[map().areas.id]);
  if (zoom) choropleth.zoomToArea(id);
  await renderAreaPanel(id);
  const panel = document.getElementById('area-panel');
  // A phone: the details open in a sheet over the bottom of the map, where the user is looking.
  if (fromMap && window.matchMedia('(max-width: 767.98px)').matches) {
    panel.classList.add('sheet-open');
    document.body.dataset.sheet = 'open';
  }
  if (focus) panel.focus();
}

async function renderAreaPanel(id) {
  const areas = map().areas;
  const feature = choropleth.features.find((f) => String(f.properties[areas.id]) === String(id));
  const body = document.getElementById('area-body');
  disposeCharts(body);
  const properties = feature.properties;
  const extra = Object.entries(properties).filter(([k]) => k !== areas.id && k !== areas.name).map(([, v]) => v).filter((v) => typeof v === 'string');
  body.replaceChildren(
    el('h3', { class: 'h5 mb-0', id: 'area-name', dataset: { area: String(id) }, text: properties[areas.name] }),
    el('p', { class: 'small text-muted', text: [`${pick(areas, 'label') || ''} ${id}`.trim(), ...extra].join(' · ') }),
  );
  // Two areas side by side: pin this one, then choose another.
  const pinned = state.compare && state.compare !== String(id)
    ? choropleth.features.find((f) => String(f.properties[areas.id]) === state.compare) : null;
  if (!state.compare) {
    body.append(el('p', {}, el('button', { type: 'button', class: 'btn btn-outline-primary btn-xs', id: 'compare', onclick: () => {
      state.compare = String(id);
      saveState();
      renderAreaPanel(id);
    } }, t('compare'))));
  } else {
    body.append(el('p', { class: 'small' }, pinned ? '' : `${t('compare_hint')} `, el('button', { type: 'button', class: 'btn btn-outline-primary btn-xs', id: 'compare-stop', onclick: () => {
      state.compare = null;
      saveState();
      renderAreaPanel(id);
    } }, t('compare_stop'))));
  }
  const comparison = pinned ? el('tbody') : null;
  if (pinned) {
    body.append(el('div', { class: 'table-responsive' }, el('table', { class: 'table table-sm compare-table', id: 'comparison' },
      el('caption', { text: t('comparison') }),
      el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: t('indicator') }), el('th', { scope: 'col', text: pinned.properties[areas.name] }),
        el('th', { scope: 'col', text: properties[areas.name] }), el('th', { scope: 'col', text: t('city_value') }))),
      comparison)));
  }
  body.append(el('h4', { class: 'h6', text: t('area_indicators') }));
  const list = el('dl', { class: 'area-indicators' });
  body.append(list);
  const current = currentIndicator();
  for (const indicator of map().indicators.filter((i) => info(i.query)?.ok)) {
    const rows = await rowsOf(indicator.query);
    const idKey = areaIdKey(indicator);
    const row = rows.find((r) => String(r[idKey]) === String(id));
    const value = row?.[indicator.value] ?? null;
    const small = choropleth.small.has(String(id));
    const rank = small || value === null ? null : rankOf(value, rankedValues(rows, idKey, indicator.value));
    const cityRows = indicator.city && info(indicator.city.query)?.ok ? await rowsOf(indicator.city.query).catch(() => []) : [];
    const cityValue = cityRows[0]?.[indicator.city?.value] ?? null;
    const version = indicator.version && row?.[indicator.version];
    const isCurrent = current && indicatorKey(indicator) === indicatorKey(current);
    if (comparison) {
      const other = rows.find((r) => String(r[idKey]) === state.compare)?.[indicator.value] ?? null;
      comparison.append(el('tr', { dataset: { indicator: indicatorKey(indicator) } }, el('th', { scope: 'row', text: `${indicatorLabel(indicator)} (${indicatorUnit(indicator)})` }),
        [other, value, cityValue].map((v) => el('td', { class: 'text-end', text: cellText(v, indicator.decimals) }))));
    }
    list.append(
      el('dt', { class: isCurrent ? 'current' : undefined, text: indicatorLabel(indicator) }),
      el('dd', { dataset: { indicator: indicatorKey(indicator), value: value === null ? '' : String(value) } },
        el('span', { class: 'value', text: `${formatNumber(value, indicator.decimals)} ${value === null ? '' : indicatorUnit(indicator)}` }),
        cityValue !== null ? el('span', { class: 'small city-value', dataset: { city: String(cityValue) }, text: ` · ${t('city_value')}: ${formatNumber(cityValue, indicator.decimals)}` }) : null,
        rank ? el('span', { class: 'small text-muted rank', dataset: { rank: rank.text }, text: ` · ${t('rank')} ${rank.text} ${t('rank_of')} ${rank.of}${rank.tied ? ` (${t('tied')})` : ''} (${t('rank_note')})` }) : null,
        small && value !== null ? el('span', { class: 'small text-muted rank', dataset: { rank: 'none' }, text: ` · ${t('not_ranked')} ${formatNumber(areas.min_population, 0)} ${t('small_area_residents')}` }) : null,
        version ? el('span', { class: 'small text-muted', text: ` · ${t('method_version')} ${version}` }) : null),
    );
  }
  const series = map().series.filter((s) => info(s.query)?.ok);
  if (series.length) body.append(el('h4', { class: 'h6 mt-3', text: t('series') }));
  for (const s of series) {
    const rows = await rowsOf(s.query);
    await renderSeries(body, s, info(s.query), rows, id);
  }
  document.body.dataset.area = String(id);
}

/** The values that are ranked: those of areas with enough residents, highest first. */
function rankedValues(rows, idKey, valueKey) {
  return rows.filter((r) => !choropleth.small.has(String(r[idKey]))).map((r) => r[valueKey]).filter((v) => v !== null && Number.isFinite(v)).sort((a, b) => b - a);
}

/** A rank with ties: areas with the same value share the positions they span ("3–5"). */
export function rankOf(value, ranked) {
  const first = ranked.filter((v) => v > value).length + 1;
  const last = ranked.filter((v) => v >= value).length;
  return { text: first === last ? String(first) : `${first}–${last}`, of: ranked.length, tied: last > first };
}

async function loadPointLayers() {
  const fieldset = document.getElementById('layers');
  fieldset.querySelectorAll('.form-check, p').forEach((n) => n.remove());
  fieldset.hidden = !map().points.length;
  const options = document.getElementById('search-options');
  options.replaceChildren(...choropleth.features.map((f) => el('option', { value: String(f.properties[map().areas.name]) })));
  for (const layer of map().points) {
    const layerInfo = info(layer.query);
    const visible = state.layers ? state.layers.has(layer.name) : layer.visible;
    const inputId = `layer-${layer.name}`;
    const check = el('div', { class: 'form-check' },
      el('input', { class: 'form-check-input', type: 'checkbox', id: inputId, checked: visible && layerInfo?.ok, disabled: !layerInfo?.ok, dataset: { layer: layer.name } }),
      el('label', { class: 'form-check-label', for: inputId }, pointLayerLabel(layer)));
    fieldset.append(check);
    if (!layerInfo?.ok) continue;
    const geojson = await getJson(`/api/v1/dashboards/${encodeURIComponent(state.dashboard)}/layers/${encodeURIComponent(layer.query)}`);
    choropleth.addPoints(layer.name, geojson, { colour: layer.color, labelKey: layer.label, visible });
    options.append(...geojson.features.map((f) => el('option', { value: String(f.properties[layer.label]) })));
    check.querySelector('input').addEventListener('change', (event) => {
      const current = state.layers ?? new Set(map().points.filter((p) => p.visible).map((p) => p.name));
      if (event.target.checked) current.add(layer.name); else current.delete(layer.name);
      state.layers = current;
      choropleth.setPointsVisible(layer.name, event.target.checked);
      saveState();
    });
  }
  document.getElementById('search-form').onsubmit = (event) => {
    event.preventDefault();
    search(document.getElementById('search').value);
  };
  document.body.dataset.layers = 'ready';
}

function search(text) {
  const wanted = text.trim().toLocaleLowerCase('it');
  if (!wanted) return;
  const areas = map().areas;
  const area = choropleth.features.find((f) => String(f.properties[areas.name]).toLocaleLowerCase('it') === wanted)
    ?? choropleth.features.find((f) => String(f.properties[areas.name]).toLocaleLowerCase('it').includes(wanted));
  if (area) {
    selectArea(area.properties[areas.id], { zoom: true, focus: true });
    return;
  }
  for (const [name, layer] of choropleth.pointLayers) {
    const point = layer.geojson.features.find((f) => String(f.properties[layer.labelKey]).toLocaleLowerCase('it').includes(wanted));
    if (point) {
      choropleth.setPointsVisible(name, true);
      const box = document.querySelector(`input[data-layer="${name}"]`);
      if (box) box.checked = true;
      choropleth.flyToPoint(point.geometry.coordinates, String(point.properties[layer.labelKey]));
      return;
    }
  }
  const errors = document.getElementById('errors');
  errors.textContent = `${t('not_found')} “${text}”`;
  errors.classList.remove('d-none');
  setTimeout(() => errors.classList.add('d-none'), 4000);
}

function renderPanels() {
  const container = document.getElementById('panels');
  disposeCharts(container);
  const panels = definition.dashboard.panels;
  document.getElementById('panels-heading').hidden = !panels.length;
  // A panel's data (and ECharts, for a chart) is loaded when the panel comes near the screen:
  // the first view needs only the map.
  const observer = new IntersectionObserver((entries) => {
    for (const entry of entries.filter((e) => e.isIntersecting)) {
      observer.unobserve(entry.target);
      entry.target.reveal?.();
    }
  }, { rootMargin: '200px' });
  container.replaceChildren(...panels.map((panel) => {
    const panelInfo = info(panel.query);
    let reveal;
    const shown = new Promise((resolve) => { reveal = resolve; });
    const card = renderPanel(state.dashboard, panel, panelInfo, panelInfo?.ok ? shown.then(() => rowsOf(panel.query)) : Promise.resolve([]));
    card.reveal = reveal;
    observer.observe(card);
    return card;
  }));
}

async function switchLanguage(next) {
  state.lang = next;
  setLanguage(next);
  saveState();
  renderChrome(await getJson('/api/v1/dashboards'));
  if (state.view === 'pianifica') {
    await showPlanView();
    return;
  }
  if (state.view === 'impatto') {
    await showImpactView();
    return;
  }
  if (map()) {
    choropleth.setLanguage(next);
    await showIndicator();
    if (state.area !== null) await renderAreaPanel(state.area);
    await loadPointLayersLabels();
  }
  renderPanels();
}

/** Point layers stay on the map; only their labels change language. */
async function loadPointLayersLabels() {
  for (const layer of map().points) {
    const label = document.querySelector(`label[for="layer-${layer.name}"]`);
    if (label) label.replaceChildren(...pointLayerLabel(layer));
  }
}

function pointLayerLabel(layer) {
  const layerInfo = info(layer.query);
  const title = layer.title ? pick(layer, 'title') : pick(layerInfo?.metadata, 'title');
  return [
    el('span', { class: 'dot', style: `background:${layer.color}`, 'aria-hidden': 'true' }),
    ` ${title}`,
    layerInfo?.freshness?.simulated ? [' ', simulatedBadge()] : null,
    layerInfo?.ok ? null : el('span', { class: 'small text-muted' }, ` ${t('unavailable_suffix')}: ${unavailableReason(layerInfo)}`),
  ].flat().filter(Boolean);
}

document.getElementById('sheet-close').addEventListener('click', () => {
  document.getElementById('area-panel').classList.remove('sheet-open');
  document.body.dataset.sheet = 'closed';
});

window.cruscotto = {
  timings,
  state,
  renderedAreaIds: () => choropleth?.renderedAreaIds() ?? [],
  /** Screen position (CSS pixels, relative to the map's container) of a longitude/latitude. */
  project: (lngLat) => choropleth.project(lngLat),
  lang,
};

main().catch((error) => {
  const errors = document.getElementById('errors');
  errors.textContent = `${t('error')}: ${error.message}`;
  errors.classList.remove('d-none');
  document.body.dataset.choropleth = 'error';
  console.error(error);
});
