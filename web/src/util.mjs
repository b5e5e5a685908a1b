// Small helpers shared by the map and the panels: fetching, elements, accessible tables, freshness.

import { t, pick, formatDate, formatNumber } from './i18n.mjs';

export async function getJson(url) {
  const response = await fetch(url);
  if (!response.ok) {
    let detail = `${response.status}`;
    try {
      const problem = await response.json();
      detail = `${problem.title}: ${problem.detail}`;
    } catch (_) { /* not problem+json */ }
    throw new Error(detail);
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

/** "Data updated on …", flagged when a source is stale or missing, with the sources' states. */
export function freshness(info) {
  if (!info) return el('span');
  const { freshness: f } = info;
  const parts = [el('span', { text: `${t('updated')} ${formatDate(f.updated_at)}` })];
  if (f.simulated) parts.push(' ', simulatedBadge());
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
