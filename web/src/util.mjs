// Small helpers shared by the map and the panels: fetching, elements, accessible tables, freshness.

import { t, pick, formatDate, formatDay, formatNumber } from './i18n.mjs';

export async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let detail = `${response.status}`;
    let type = null;
    try {
      const problem = await response.json();
      detail = `${problem.title}: ${problem.detail}`;
      type = problem.type ?? null;
    } catch (_) { /* not problem+json */ }
    const error = new Error(detail);
    error.status = response.status;
    error.type = type;
    throw error;
  }
  return response.json();
}

/** `el('p', { class: 'x', text: 'y' }, child, ...)`. */
export function el(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'text') element.textContent = value;
    else if (key === 'class') element.className = value;
    else if (key.startsWith('on')) element.addEventListener(key.slice(2), value);
    else if (key === 'dataset') Object.assign(element.dataset, value);
    else element.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return element;
}

/** A cell's text: numbers in the local format, everything else as written. */
export function cellText(value, decimals) {
  if (value === null || value === undefined) return '—';
  if (typeof value === 'number') return Number.isInteger(value) && decimals === undefined ? formatNumber(value, 0) : formatNumber(value, decimals ?? 2);
  return String(value);
}

/**
 * An accessible table of rows: a caption, column headers with scope, numbers right-aligned.
 * `columns` is a list of { key, label, decimals }; `rowHeader` the key whose cell is a row header.
 */
export function dataTable(rows, columns, { caption, rowHeader, rowAction } = {}) {
  const head = el('tr', {}, columns.map((c) => el('th', { scope: 'col', text: c.label })), rowAction ? el('th', { scope: 'col', text: rowAction.label }) : null);
  const body = rows.map((row) => el('tr', {},
    columns.map((c) => {
      const value = row[c.key];
      const attributes = { text: cellText(value, c.decimals), class: typeof value === 'number' ? 'text-end' : undefined };
      return c.key === rowHeader ? el('th', { scope: 'row', ...attributes }) : el('td', attributes);
    }),
    rowAction ? el('td', {}, rowAction.render(row)) : null,
  ));
  return el('table', { class: 'table table-sm table-striped' }, caption ? el('caption', { text: caption }) : null, el('thead', {}, head), el('tbody', {}, body));
}

/** The reference period of an indicator: from its rows (`period_column`: first–last value, a
 * single value when they agree) or as declared (`period`). Returns [text, end of a series as a
 * Date (null for a declared period)]. */
export function referencePeriod(metadata, rows) {
  const column = metadata?.period_column;
  if (column && rows?.length) {
    const values = rows.map((r) => r[column]).filter((v) => v !== null && v !== undefined).sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    if (values.length) {
      const [first, last] = [values[0], values[values.length - 1]];
      const show = (v) => (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}/.test(v) ? formatDay(v) : String(v));
      return [first === last ? show(last) : `${show(first)} – ${show(last)}`, periodEnd(last)];
    }
  }
  if (metadata?.period) return [metadata.period, null];
  return [null, null];
}

/** The last day a period value covers: a year ends on 31 December, a date is itself. */
function periodEnd(value) {
  if (typeof value === 'number' || /^\d{4}$/.test(String(value))) return new Date(Date.UTC(Number(value), 11, 31, 23, 59, 59));
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** The indicator's reference period and source next to its value, when it was loaded, and flags:
 * dated (a series whose last value is older than the dashboard's `max_age`), simulated, stale
 * sources.
 * `rows` (or a promise of them) give the period when the query names a `period_column`. */
export function freshness(info, rows) {
  if (!info) return el('span');
  const { freshness: f, metadata } = info;
  const period = el('span', { class: 'period' });
  const dated = el('span');
  const source = pick(metadata, 'source');
  const parts = [
    period,
    source ? el('span', { class: 'source', text: `${t('source')}: ${source}. ` }) : null,
    el('span', { class: 'loaded', text: `${t('loaded')} ${formatDate(f.updated_at)}.` }),
    dated,
  ];
  Promise.resolve(rows).then((r) => {
    const [text, end] = referencePeriod(metadata, r);
    if (!text) return;
    period.textContent = `${t('period')}: ${text}. `;
    const ageDays = end ? (Date.now() - end.getTime()) / 86400000 : 0;
    if (f.max_age_days && ageDays > f.max_age_days) {
      dated.replaceChildren(' ', el('span', { class: 'badge bg-warning text-dark dated', dataset: { dated: 'true' }, title: `${t('dated_detail')} ${f.max_age_days} ${t('days_ago')}` }, t('dated')),
        el('span', { class: 'visually-hidden', text: ` (${t('dated_detail')} ${f.max_age_days} ${t('days_ago')})` }));
    }
  }).catch(() => {});
  if (f.simulated) parts.push(' ', simulatedBadge());
  const result = info.result;
  if (result?.refresh_failed_at && result?.computed_at) {
    parts.push(' ', el('span', { class: 'badge bg-warning text-dark refresh-failed', dataset: { refreshFailed: 'true' }, text: t('refresh_failed') }),
      el('span', { class: 'small', text: ` ${t('refresh_failed_detail')} ${formatDate(result.computed_at)}.` }));
  }
  if (f.stale) {
    const bad = f.sources.filter((s) => s.stale).map((s) => `${s.table} (${s.state})`).join(', ');
    parts.push(' ', el('span', { class: 'badge bg-warning text-dark', text: t('stale') }), ' ', el('span', { class: 'visually-hidden', text: t('stale_detail') }), el('span', { class: 'small', text: ` ${bad}` }));
  }
  return el('p', { class: 'freshness small text-muted mb-1', dataset: { stale: String(f.stale) } }, parts);
}

/** "Simulated data", for what comes from a built-in simulator rather than the city's sources. */
export function simulatedBadge() {
  return el('span', { class: 'badge simulated', title: t('simulated_detail'), dataset: { simulated: 'true' } },
    t('simulated'), el('span', { class: 'visually-hidden', text: ` (${t('simulated_detail')})` }));
}

/** A link downloading the rows behind a panel as CSV. */
export function csvLink(dashboard, query, label) {
  return el('a', {
    class: 'btn btn-outline-primary btn-xs csv-link',
    href: `/api/v1/dashboards/${encodeURIComponent(dashboard)}/data/${encodeURIComponent(query)}?format=csv`,
    download: `${query}.csv`,
    dataset: { query },
  }, label ?? t('download_csv'));
}

/** Why a saved query is unavailable: its description says what it needs, the error why it fails. */
export function unavailableReason(info) {
  const description = pick(info?.metadata, 'description');
  const needs = description.match(/(Richiede|Needs)[^.]*\./);
  return needs ? needs[0] : (info?.error ?? '');
}

/** Why a panel could not be drawn, in an administrator's words; the technical reason folded. */
export function failureText(error) {
  const kind = String(error?.type ?? '').split(':').pop();
  const key = {
    'time-limit': 'failed_time',
    'memory-limit': 'failed_size',
    'row-limit': 'failed_size',
    'result-unavailable': 'failed_later',
    'bad-request': 'failed_source',
    'invalid-query': 'failed_source',
  }[kind] ?? 'failed_other';
  return el('div', { class: 'panel-failed', dataset: { failed: kind || 'other' } },
    el('p', { class: 'mb-1', text: t(key) }),
    el('details', { class: 'small' }, el('summary', { text: t('technical_detail') }), el('span', { lang: 'en', text: error?.message ?? '' })));
}

/** Labels and units of a query's output columns, from its `columns` (`columns_en`) metadata:
 * `name = Label [unit]; other = Other label`. */
export function columnLabels(metadata) {
  const labels = new Map();
  for (const item of String(pick(metadata, 'columns') ?? '').split(';')) {
    const at = item.indexOf('=');
    if (at < 0) continue;
    const value = item.slice(at + 1).trim();
    const match = value.match(/^(.*?)\s*\[([^\]]*)\]$/);
    labels.set(item.slice(0, at).trim(), match ? { label: match[1], unit: match[2] || null } : { label: value, unit: null });
  }
  return labels;
}

/** A column's header: its declared label and unit, else its name. */
export function columnHeader(metadata, column) {
  const declared = columnLabels(metadata).get(column);
  if (!declared) return column;
  return declared.unit ? `${declared.label} (${declared.unit})` : declared.label;
}
