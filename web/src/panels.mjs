// Panels under the map (KPI, bar, line, table) and the charts of the side panel. ECharts is loaded
// only when a chart is drawn, after the map. Every chart has the same data as a table beside it.

import { t, pick, formatNumber, lang } from './i18n.mjs';
import { el, dataTable, freshness, csvLink, unavailableReason, failureText, columnHeader } from './util.mjs';

let echartsModule = null;
function echarts() {
  echartsModule ??= import('/assets/vendor/echarts/echarts.esm.min.mjs');
  return echartsModule;
}

const charts = new Set();
window.addEventListener('resize', () => charts.forEach((chart) => chart.resize()));

/** Sort rows by `column` (a leading `-` for descending); views keep no order. */
export function sortRows(rows, sort) {
  if (!sort) return rows;
  const descending = sort.startsWith('-');
  const key = descending ? sort.slice(1) : sort;
  return [...rows].sort((a, b) => {
    const x = a[key];
    const y = b[key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return (x < y ? -1 : 1) * (descending ? -1 : 1);
  });
}

function labelOf(panel, index, column, metadata) {
  const labels = lang() === 'en' && panel.labels_en?.length ? panel.labels_en : panel.labels;
  return labels?.[index] ?? columnHeader(metadata, column);
}

/** A line or bar chart, with an accessible description; the caller adds the data table. */
/** An x value as the axis shows it: a timestamp at midnight is a day ("2026-11-29"). */
function axisText(value) {
  const text = String(value);
  return /^\d{4}-\d{2}-\d{2}T00:00:00(\.0+)?Z?$/.test(text) ? text.slice(0, 10) : text;
}

export async function drawChart(container, { kind, rows, x, y, names, title }) {
  const module = await echarts();
  const chart = module.init(container, null, { renderer: 'svg' });
  charts.add(chart);
  // Numbers on axes and in tooltips in the page's language (1.200.000 in Italian).
  const number = (v) => (typeof v === 'number' ? formatNumber(v, Number.isInteger(v) ? 0 : 1) : String(v));
  chart.setOption({
    aria: { enabled: true, label: { description: `${title}. ${t('data_table')}: ${t('download_csv').toLowerCase()}.` } },
    animation: false,
    color: ['#0066cc', '#b35900', '#008055', '#6b21a8'],
    grid: { left: 8, right: 16, top: 28, bottom: 8, containLabel: true },
    tooltip: { trigger: 'axis', valueFormatter: number },
    legend: y.length > 1 ? { top: 0 } : undefined,
    xAxis: kind === 'bar' ? { type: 'value', axisLabel: { formatter: number } } : { type: 'category', data: rows.map((r) => axisText(r[x])) },
    yAxis: kind === 'bar' ? { type: 'category', inverse: true, data: rows.map((r) => String(r[x])), axisLabel: { width: 140, overflow: 'truncate' } } : { type: 'value', scale: true, axisLabel: { formatter: number } },
    series: y.map((column, i) => ({ type: kind, name: names[i], data: rows.map((r) => r[column]), showSymbol: false })),
  });
  return chart;
}

/** One panel card: title, freshness, the content, its data table and a CSV download. */
export function renderPanel(dashboardName, panel, info, rowsPromise) {
  const title = panel.title ? pick(panel, 'title') : pick(info?.metadata, 'title') || panel.query;
  // A panel without data is a short note: it does not take a whole row.
  const width = !info?.ok ? 'col-12 col-md-6 col-xl-4' : panel.kind === 'table' || panel.kind === 'line' ? 'col-12 col-xl-6' : 'col-12 col-md-6 col-xl-6';
  const headingId = `panel-${panel.query}-${panel.kind}`;
  const card = el('section', { class: `${width}`, 'aria-labelledby': headingId, dataset: { panel: panel.query, kind: panel.kind } });
  const body = el('div', { class: 'card card-bg p-3 h-100' });
  card.append(body);
  body.append(el('h3', { class: 'h5', id: headingId, text: title }));
  if (!info?.ok) {
    card.dataset.unavailable = 'true';
    body.classList.add('unavailable');
    body.append(el('p', { class: 'mb-0' }, el('strong', { text: `${t('unavailable_panel')}. ` }), unavailableReason(info)));
    return card;
  }
  body.append(freshness(info, rowsPromise));
  const content = el('div', { class: 'panel-content' }, el('p', { class: 'text-muted', text: t('loading') }));
  body.append(content);
  const unit = pick(info.metadata, 'unit');
  rowsPromise.then(async (all) => {
    const rows = sortRows(all, panel.sort).slice(0, panel.limit ?? undefined);
    const columns = panel.kind === 'table'
      ? (panel.columns.length ? panel.columns : Object.keys(rows[0] ?? {}))
      : [panel.x, ...panel.y].filter(Boolean);
    const names = panel.y.map((c, i) => labelOf(panel, i, c, info.metadata));
    content.replaceChildren();
    if (panel.kind === 'kpi') {
      const figures = (panel.y.length ? panel.y : Object.keys(rows[0] ?? {})).map((column, i) => el('div', { class: 'kpi' },
        el('div', { class: 'kpi-value', text: formatNumber(rows[0]?.[column], Number.isInteger(rows[0]?.[column]) ? 0 : 1), dataset: { column, value: String(rows[0]?.[column]) } }),
        el('div', { class: 'kpi-label', text: labelOf(panel, i, column, info.metadata) })));
      content.append(el('div', { class: 'kpis' }, figures));
    } else if (panel.kind === 'bar' || panel.kind === 'line') {
      const chartBox = el('div', { class: `chart chart-${panel.kind}`, role: 'img', style: panel.kind === 'bar' ? `height:${Math.max(220, rows.length * 26 + 40)}px` : 'height:280px' });
      content.append(chartBox);
      await drawChart(chartBox, { kind: panel.kind, rows, x: panel.x, y: panel.y, names, title });
      content.append(el('details', { class: 'mt-2' }, el('summary', { text: t('data_table') }),
        el('div', { class: 'table-responsive panel-table', tabindex: '0', role: 'region', 'aria-label': `${t('data_table')}: ${title}` }, dataTable(rows, columns.map((c) => ({ key: c, label: c === panel.x ? columnHeader(info.metadata, c) : names[panel.y.indexOf(c)] ?? columnHeader(info.metadata, c) })), { caption: `${title}${unit ? ` (${unit})` : ''}`, rowHeader: panel.x }))));
    } else {
      content.append(el('div', { class: 'table-responsive panel-table', tabindex: '0', role: 'region', 'aria-label': `${t('data_table')}: ${title}` }, dataTable(rows, columns.map((c) => ({ key: c, label: columnHeader(info.metadata, c) })), { caption: `${title}${unit ? ` (${unit})` : ''}`, rowHeader: columns[0] })));
    }
    content.append(el('p', { class: 'mt-2 mb-0' }, csvLink(dashboardName, panel.query)));
  }).catch((error) => {
    card.dataset.failed = 'true';
    content.replaceChildren(failureText(error));
  });
  return card;
}

/** A time series of the selected area, as a line chart and a table. */
export async function renderSeries(container, series, info, rows, areaId) {
  const title = series.title ? pick(series, 'title') : pick(info?.metadata, 'title');
  const mine = sortRows(rows.filter((r) => String(r[series.id]) === String(areaId)), series.x);
  const section = el('section', { class: 'mt-3', dataset: { series: series.query } }, el('h4', { class: 'h6', text: title }));
  container.append(section);
  if (!mine.length) {
    section.append(el('p', { class: 'small text-muted', text: t('no_data') }));
    return;
  }
  const box = el('div', { class: 'chart chart-series', role: 'img', style: 'height:200px' });
  section.append(box);
  await drawChart(box, { kind: 'line', rows: mine, x: series.x, y: series.y, names: series.y.map((c) => columnHeader(info?.metadata, c)), title });
  section.append(el('details', {}, el('summary', { text: t('data_table') }),
    dataTable(mine, [series.x, ...series.y].map((c) => ({ key: c, label: columnHeader(info?.metadata, c), decimals: 0 })), { caption: title, rowHeader: series.x })));
}

export function disposeCharts(root) {
  for (const chart of [...charts]) {
    if (root.contains(chart.getDom())) {
      chart.dispose();
      charts.delete(chart);
    }
  }
}
