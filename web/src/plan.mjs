// The "Pianifica" view: where to place the next facilitation points. Asks POST /api/v1/plans for
// a scenario (plans/*.toml) with the demand indicator, radius and number of sites chosen here,
// and shows the answer: the chosen points with their radius on a drawing of the areas (covered by
// the open points, newly covered, left out), the coverage curve for 1..k points, the table of the
// chosen sites, and the plan to download (CSV, GeoJSON).

import { t, pick, formatNumber } from './i18n.mjs';
import { getJson, el } from './util.mjs';
import { polygonsOf, positionsOf } from './shapes.mjs';

const SVG = 'http://www.w3.org/2000/svg';
const WIDTH = 1000;
/** Metres in a degree of latitude on the planner's sphere (radius 6,371,008.8 m). */
const METRES_PER_DEGREE = (6371008.8 * Math.PI) / 180;
const COLOURS = { open: '#9ecae1', new: '#1a9850', none: '#d73027', zero: '#e0e0e0' };

function svg(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(key, String(value));
  }
  if (text !== null) element.textContent = text;
  return element;
}

async function postJson(url, body) {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw new Error(answer?.detail ? `${answer.title}: ${answer.detail}` : `${response.status}`);
  return answer;
}

/**
 * Show the planner in `container`, drawn over the map areas of the scenario's dashboard (their
 * ids are the demand ids). `state` is the page's URL state (scenario, demand, radius, k), and
 * `saveState` writes it back to the URL.
 */
export async function showPlanner(container, { state, saveState }) {
  const scenarios = await getJson('/api/v1/plans/scenarios');
  if (!scenarios.length) {
    container.replaceChildren(el('p', { text: t('plan_none') }));
    return null;
  }
  const scenario = scenarios.find((s) => s.name === state.scenario) ?? scenarios[0];
  const dashboard = scenario.dashboard ?? state.dashboard;
  const definition = await getJson(`/api/v1/dashboards/${encodeURIComponent(dashboard)}`);
  const map = definition.dashboard.map;
  const areas = { id: map.areas.id, name: map.areas.name };
  const geojson = await getJson(`/api/v1/dashboards/${encodeURIComponent(dashboard)}/layers/${encodeURIComponent(map.areas.query)}`);
  const view = new PlannerView(container, scenario, geojson, areas, state, saveState);
  await view.solve();
  return view;
}

class PlannerView {
  constructor(container, scenario, geojson, areas, state, saveState) {
    this.container = container;
    this.scenario = scenario;
    this.features = geojson.features;
    this.areas = areas;
    this.state = state;
    this.saveState = saveState;
    this.plan = null;
    const weights = scenario.demand.weights;
    this.demand = weights.some((w) => w.name === state.demand) ? state.demand : weights[0].name;
    const radii = scenario.radius_options_m.length ? scenario.radius_options_m : [scenario.radius_m];
    this.radii = radii.includes(scenario.radius_m) ? radii : [...radii, scenario.radius_m].sort((a, b) => a - b);
    this.radius = this.radii.includes(Number(state.radius)) ? Number(state.radius) : scenario.radius_m;
    this.maxK = Math.max(scenario.k, 30);
    const k = Number.parseInt(state.k, 10);
    this.k = Number.isInteger(k) && k >= 1 && k <= this.maxK ? k : scenario.k;
    this.render();
  }

  render() {
    const s = this.scenario;
    const demandSelect = el('select', { id: 'plan-demand', class: 'form-select' },
      s.demand.weights.map((w) => el('option', { value: w.name, selected: w.name === this.demand, text: pick(w, 'title') })));
    const radiusSelect = el('select', { id: 'plan-radius', class: 'form-select' },
      this.radii.map((r) => el('option', { value: String(r), selected: r === this.radius, text: `${formatNumber(r, 0)} m` })));
    const kValue = el('output', { id: 'plan-k-value', for: 'plan-k', class: 'fw-semibold', text: String(this.k) });
    const slider = el('input', { id: 'plan-k', type: 'range', class: 'form-range', min: 1, max: this.maxK, step: 1, value: this.k });
    slider.addEventListener('input', () => { kValue.textContent = slider.value; });
    const solve = () => {
      this.demand = demandSelect.value;
      this.radius = Number(radiusSelect.value);
      this.k = Number(slider.value);
      this.solve();
    };
    demandSelect.addEventListener('change', solve);
    radiusSelect.addEventListener('change', solve);
    slider.addEventListener('change', solve);
    this.status = el('p', { id: 'plan-status', class: 'small mb-1', role: 'status', 'aria-live': 'polite' });
    this.summary = el('div', { id: 'plan-summary', class: 'mb-2' });
    this.mapBox = el('div', { id: 'plan-map', class: 'plan-map', role: 'img', 'aria-label': t('plan_map') });
    this.legend = el('ul', { class: 'legend list-unstyled mb-0', id: 'plan-legend', 'aria-label': t('legend') });
    this.curveBox = el('div', { id: 'plan-curve' });
    this.tableBox = el('div', { id: 'plan-sites', class: 'table-responsive' });
    this.uncoveredBox = el('div', { id: 'plan-uncovered' });
    this.exports = el('p', { id: 'plan-exports', class: 'd-flex gap-3 flex-wrap' });
    this.container.replaceChildren(
      el('h2', { class: 'h3', id: 'plan-heading', text: pick(s, 'title') }),
      el('p', { class: 'mb-2', text: pick(s, 'description') }),
      el('form', { class: 'row g-2 align-items-end mb-2', id: 'plan-form', onsubmit: (e) => { e.preventDefault(); solve(); } },
        el('div', { class: 'col-md-4' }, el('label', { for: 'plan-demand', class: 'form-label fw-semibold', text: t('plan_demand') }), demandSelect),
        el('div', { class: 'col-md-2' }, el('label', { for: 'plan-radius', class: 'form-label fw-semibold', text: t('plan_radius') }), radiusSelect),
        el('div', { class: 'col-md-4' }, el('label', { for: 'plan-k', class: 'form-label fw-semibold' }, `${t('plan_k')}: `, kValue), slider),
        el('div', { class: 'col-md-2' }, el('button', { type: 'submit', class: 'btn btn-primary w-100', id: 'plan-solve', text: t('plan_solve') }))),
      this.status,
      this.summary,
      el('div', { class: 'row g-3' },
        el('section', { class: 'col-lg-8', 'aria-labelledby': 'plan-map-heading' },
          el('h3', { class: 'h5', id: 'plan-map-heading', text: t('plan_map') }),
          el('div', { class: 'map-wrap' }, el('div', { class: 'map-box' }, this.mapBox),
            el('div', { class: 'map-legend' }, el('h4', { class: 'h6 mb-1', text: t('legend') }), this.legend))),
        el('section', { class: 'col-lg-4', 'aria-labelledby': 'plan-curve-heading' },
          el('h3', { class: 'h5', id: 'plan-curve-heading', text: t('plan_curve') }),
          this.curveBox)),
      el('section', { class: 'mt-3', 'aria-labelledby': 'plan-sites-heading' },
        el('h3', { class: 'h5', id: 'plan-sites-heading', text: t('plan_sites') }),
        this.exports, this.tableBox, this.uncoveredBox),
    );
    this.drawAreas();
  }

  async solve() {
    const body = { scenario: this.scenario.name, demand: this.demand, radius_m: this.radius, k: this.k };
    Object.assign(this.state, { scenario: this.scenario.name, demand: this.demand, radius: String(this.radius), k: String(this.k) });
    this.saveState();
    document.body.dataset.plan = 'solving';
    this.status.textContent = t('plan_solving');
    const requested = JSON.stringify(body);
    this.pending = requested;
    try {
      const plan = await postJson('/api/v1/plans', body);
      if (this.pending !== requested) return;
      this.plan = plan;
      this.status.textContent = '';
      this.show();
      document.body.dataset.planSites = String(plan.result.chosen.length);
      document.body.dataset.planId = plan.id;
      document.body.dataset.plan = 'ready';
    } catch (error) {
      if (this.pending !== requested) return;
      this.status.textContent = `${t('error')}: ${error.message}`;
      document.body.dataset.plan = 'error';
    }
  }

  /** The areas' drawing, once: longitude scaled by the cosine of the mid latitude. */
  drawAreas() {
    let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const feature of this.features) {
      positionsOf(feature.geometry, ([x, y]) => {
        minX = Math.min(minX, x); maxX = Math.max(maxX, x);
        minY = Math.min(minY, y); maxY = Math.max(maxY, y);
      });
    }
    const k = Math.cos((((minY + maxY) / 2) * Math.PI) / 180);
    this.scale = WIDTH / ((maxX - minX) * k || 1);
    this.toUser = ([x, y]) => [(x - minX) * k * this.scale, (maxY - y) * this.scale];
    const height = Math.max(1, (maxY - minY) * this.scale);
    this.svg = svg('svg', { viewBox: `0 0 ${WIDTH} ${height.toFixed(1)}`, class: 'static-map', 'aria-hidden': 'true' });
    this.areaPaths = new Map();
    const group = svg('g', { class: 'areas' });
    for (const feature of this.features) {
      const id = String(feature.properties[this.areas.id]);
      const d = polygonsOf(feature.geometry).map((rings) => rings.map((ring) => `M${ring.map((p) => this.toUser(p).map((v) => v.toFixed(1)).join(',')).join('L')}Z`).join('')).join('');
      const path = svg('path', { d, fill: COLOURS.zero, 'fill-rule': 'evenodd', 'data-area': id });
      path.append(svg('title', {}, String(feature.properties[this.areas.name] ?? id)));
      this.areaPaths.set(id, path);
      group.append(path);
    }
    this.circles = svg('g', { class: 'plan-circles', 'pointer-events': 'none' });
    this.sites = svg('g', { class: 'plan-sites' });
    this.svg.append(group, this.circles, this.sites);
    this.mapBox.replaceChildren(this.svg);
  }

  show() {
    const plan = this.plan;
    const result = plan.result;
    const unit = pick({ unit: plan.inputs.demand_unit, unit_en: 'persons' }, 'unit');
    const demandTitle = pick({ title: plan.inputs.demand_title, title_en: plan.inputs.demand_title_en }, 'title');
    const solver = result.solver;
    const method = solver.method === 'exact' ? t('plan_exact') : t(solver.optimal ? 'plan_greedy_bound' : 'plan_greedy');
    const quality = solver.optimal ? t('plan_optimal') : `${t('plan_gap')} ${formatNumber(solver.gap * 100, 1)}%`;
    this.summary.replaceChildren(
      el('p', { class: 'lead mb-1', id: 'plan-headline' },
        `${result.chosen.length} ${t('plan_new_points')} ${formatNumber(result.open_covered.persons, 0)} (${formatNumber(result.open_covered.share_of_total * 100, 1)}%) `,
        `${t('plan_to')} `, el('strong', { text: `${formatNumber(result.covered.persons, 0)} (${formatNumber(result.covered.share_of_total * 100, 1)}%)` }),
        ` ${t('plan_of')} ${formatNumber(result.total_demand, 0)} ${unit} — ${demandTitle.toLowerCase()}, ${t('plan_within')} ${formatNumber(result.radius_m, 0)} m.`),
      el('p', { class: 'small text-muted mb-0', id: 'plan-method', dataset: { method: solver.method, optimal: String(solver.optimal) } },
        `${method}: ${quality}. ${t('plan_coverable')} ${formatNumber(result.covered.share_of_coverable * 100, 1)}% ${t('plan_coverable_of')}. `,
        `${t('plan_inputs')}: ${plan.inputs.demand_points} ${t('plan_areas')}, ${plan.inputs.candidates} ${t('plan_candidates')}, ${plan.inputs.open_sites} ${t('plan_open')}.`),
    );
    // Areas: covered by an open point, newly covered, left out; those of weight 0 grey.
    const byId = new Map(result.demand.map((d) => [String(d.id), d]));
    const counts = { open: 0, new: 0, none: 0, zero: 0 };
    for (const [id, path] of this.areaPaths) {
      const d = byId.get(id);
      const kind = !d || d.weight <= 0 ? 'zero' : d.covered_by;
      counts[kind] += 1;
      path.setAttribute('fill', COLOURS[kind]);
      path.dataset.covered = kind;
    }
    const metres = this.scale / METRES_PER_DEGREE;
    const radius = (result.radius_m * metres).toFixed(1);
    this.circles.replaceChildren(
      ...result.open.map((s) => { const [x, y] = this.toUser([s.lon, s.lat]); return svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: radius, class: 'open-radius' }); }),
      ...result.chosen.map((s) => { const [x, y] = this.toUser([s.lon, s.lat]); return svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: radius, class: 'new-radius' }); }),
    );
    this.sites.replaceChildren(
      ...result.open.map((s) => {
        const [x, y] = this.toUser([s.lon, s.lat]);
        const dot = svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 5, class: 'open-site', 'data-open': s.id });
        dot.append(svg('title', {}, `${s.name} (${t('plan_open_one')})`));
        return dot;
      }),
      ...result.chosen.map((s) => {
        const [x, y] = this.toUser([s.lon, s.lat]);
        const group = svg('g', { class: 'new-site', 'data-site': s.id });
        group.append(svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 11 }),
          svg('text', { x: x.toFixed(1), y: y.toFixed(1), 'text-anchor': 'middle', 'dominant-baseline': 'central' }, String(s.rank)),
          svg('title', {}, `${s.rank}. ${s.name}`));
        return group;
      }),
    );
    this.legend.replaceChildren(
      ...[['new', t('plan_legend_new')], ['open', t('plan_legend_open')], ['none', t('plan_legend_none')], ['zero', t('plan_legend_zero')]]
        .map(([kind, label]) => el('li', { dataset: { legend: kind } }, el('span', { class: 'swatch', style: `background:${COLOURS[kind]}`, 'aria-hidden': 'true' }), `${label} (${counts[kind]})`)),
      el('li', {}, el('span', { class: 'dot plan-dot-new', 'aria-hidden': 'true' }), t('plan_legend_point')),
      el('li', {}, el('span', { class: 'dot plan-dot-open', 'aria-hidden': 'true' }), t('plan_legend_open_point')),
    );
    this.renderCurve(result, unit);
    this.renderTable(result, unit);
    const link = (format, label) => el('a', { class: 'btn btn-outline-primary btn-sm', href: `/api/v1/plans/${encodeURIComponent(plan.id)}?format=${format}`, download: `piano-${plan.id}.${format}`, dataset: { export: format }, text: label });
    this.exports.replaceChildren(link('csv', t('plan_csv')), link('geojson', t('plan_geojson')),
      el('span', { class: 'small text-muted align-self-center', text: `${t('plan_saved')} ${plan.id}` }));
  }

  /** Persons covered for 0 (the open points alone) to K new points; the chosen k marked. */
  renderCurve(result, unit) {
    const points = [{ k: 0, persons: result.open_covered.persons }, ...result.curve];
    const [w, h, left, bottom, top, right] = [360, 220, 52, 30, 10, 10];
    const maxK = points[points.length - 1].k;
    const maxY = Math.max(result.total_demand, ...points.map((p) => p.persons)) || 1;
    const x = (k) => left + ((w - left - right) * k) / Math.max(1, maxK);
    const y = (v) => h - bottom - ((h - bottom - top) * v) / maxY;
    const chart = svg('svg', { viewBox: `0 0 ${w} ${h}`, class: 'plan-curve', role: 'img', 'aria-labelledby': 'plan-curve-heading' });
    for (const share of [0, 0.25, 0.5, 0.75, 1]) {
      chart.append(svg('line', { x1: left, x2: w - right, y1: y(maxY * share).toFixed(1), y2: y(maxY * share).toFixed(1), class: 'grid' }),
        svg('text', { x: left - 4, y: y(maxY * share).toFixed(1), 'text-anchor': 'end', 'dominant-baseline': 'central', class: 'tick' }, `${Math.round(share * 100)}%`));
    }
    chart.append(svg('polyline', { points: points.map((p) => `${x(p.k).toFixed(1)},${y(p.persons).toFixed(1)}`).join(' '), class: 'line' }));
    for (const p of points) {
      const dot = svg('circle', { cx: x(p.k).toFixed(1), cy: y(p.persons).toFixed(1), r: p.k === result.k ? 5 : 3, class: p.k === result.k ? 'current' : 'point', 'data-k': p.k });
      dot.append(svg('title', {}, `${p.k}: ${formatNumber(p.persons, 0)} ${unit}`));
      chart.append(dot);
    }
    chart.append(svg('text', { x: (left + w - right) / 2, y: h - 4, 'text-anchor': 'middle', class: 'tick' }, t('plan_curve_x')));
    for (const k of [0, Math.round(maxK / 2), maxK]) {
      chart.append(svg('text', { x: x(k).toFixed(1), y: h - bottom + 12, 'text-anchor': 'middle', class: 'tick' }, String(k)));
    }
    const rows = points.map((p) => el('tr', { dataset: { k: String(p.k) } }, el('th', { scope: 'row', text: String(p.k) }),
      el('td', { class: 'text-end', text: formatNumber(p.persons, 0) }),
      el('td', { class: 'text-end', text: `${formatNumber((p.persons / (result.total_demand || 1)) * 100, 1)}%` })));
    this.curveBox.replaceChildren(chart,
      el('p', { class: 'small text-muted', text: t('plan_curve_note') }),
      el('details', {}, el('summary', { text: t('data_table') }),
        el('table', { class: 'table table-sm', id: 'plan-curve-table' },
          el('caption', { text: t('plan_curve') }),
          el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: t('plan_k') }), el('th', { scope: 'col', text: unit }), el('th', { scope: 'col', text: '%' }))),
          el('tbody', {}, rows))));
  }

  renderTable(result, unit) {
    const kind = (site) => (this.state.lang === 'en' ? this.kindEn(site.kind) : site.kind);
    const rows = result.chosen.map((s) => el('tr', { dataset: { site: s.id } },
      el('td', { class: 'text-end', text: String(s.rank) }),
      el('th', { scope: 'row', text: s.name }),
      el('td', { text: kind(s) }),
      el('td', { class: 'text-end', text: formatNumber(s.adds, 0) }),
      el('td', { class: 'text-end', text: formatNumber(s.within_radius, 0) })));
    this.tableBox.replaceChildren(el('table', { class: 'table table-sm', id: 'plan-table' },
      el('caption', { text: t('plan_sites') }),
      el('thead', {}, el('tr', {}, ...[t('plan_rank'), t('name'), t('plan_kind'), `${t('plan_adds')} (${unit})`, `${t('plan_within_radius')} (${unit})`]
        .map((label) => el('th', { scope: 'col', text: label })))),
      el('tbody', {}, rows)));
    const uncovered = result.uncovered.slice(0, 10);
    this.uncoveredBox.replaceChildren(
      el('h4', { class: 'h6', text: `${t('plan_uncovered')} (${result.uncovered.length})` }),
      uncovered.length ? el('ul', { class: 'small' }, uncovered.map((d) => el('li', { text: `${d.name}: ${formatNumber(d.weight, 0)} ${unit}` }))) : el('p', { class: 'small', text: t('plan_all_covered') }),
    );
  }

  kindEn(kind) {
    const source = [...this.scenario.candidates, ...this.scenario.open].find((c) => c.kind === kind);
    return source?.kind_en ?? kind;
  }
}
