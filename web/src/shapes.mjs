// What both maps share and what the page needs before either is drawn: classes and colours of an
// indicator, the legend, the areas too small to rank, the shapes' centroids and bounds. No map
// library here, so the page's text never waits for MapLibre's code.

import { t, formatNumber } from './i18n.mjs';
import { el } from './util.mjs';

// Viridis, five classes: colour-blind safe and readable in greyscale. Index 0 = least divide.
export const PALETTE = ['#fde725', '#5ec962', '#21918c', '#3b528b', '#440154'];
export const NO_DATA = '#d9d9d9';

/** Class breaks: upper bounds of every class but the last. */
export function quantileBreaks(values, classes = PALETTE.length) {
  const sorted = values.filter((v) => v !== null && Number.isFinite(v)).sort((a, b) => a - b);
  if (!sorted.length) return [];
  const breaks = [];
  for (let i = 1; i < classes; i += 1) {
    const value = sorted[Math.min(sorted.length - 1, Math.floor((i * sorted.length) / classes) - 1)];
    if (!breaks.length || value > breaks[breaks.length - 1]) breaks.push(value);
  }
  if (breaks[breaks.length - 1] >= sorted[sorted.length - 1]) breaks.pop();
  return breaks;
}

export function classOf(value, breaks) {
  if (value === null || value === undefined || !Number.isFinite(value)) return -1;
  const index = breaks.findIndex((b) => value <= b);
  return index === -1 ? breaks.length : index;
}

/** Colours for n classes; reversed when higher is better, so darker always means worse. */
function colours(count, higherIsBetter) {
  const last = PALETTE.length - 1;
  const list = count <= 1 ? [PALETTE[last]] : Array.from({ length: count }, (_, i) => PALETTE[Math.round((i * last) / (count - 1))]);
  return higherIsBetter ? list.reverse() : list;
}

/**
 * How an indicator colours the areas: `values` by area id (text). Returns the colour of each
 * area and the legend's entries (a swatch, the range, how many areas fall in it).
 */
export function classify(values, features, idKey, { classes, breaks: fixedBreaks, higherIsBetter, decimals }, { small, minPopulation }) {
  const list = [...values.values()];
  const breaks = classes === 'fixed' ? fixedBreaks : quantileBreaks(list);
  const palette = colours(breaks.length + 1, higherIsBetter);
  const colourOf = (id) => {
    const cls = classOf(values.get(String(id)), breaks);
    return cls === -1 ? NO_DATA : palette[cls];
  };
  const finite = list.filter((v) => v !== null && Number.isFinite(v));
  const min = Math.min(...finite);
  const max = Math.max(...finite);
  const legend = palette.map((colour, i) => {
    const low = i === 0 ? min : breaks[i - 1];
    const high = i === breaks.length ? max : breaks[i];
    return { colour, label: `${i === 0 ? '' : '> '}${formatNumber(low, decimals)} – ${formatNumber(high, decimals)}`, count: list.filter((v) => classOf(v, breaks) === i).length };
  });
  const missing = list.filter((v) => v === null || !Number.isFinite(v)).length + features.filter((f) => !values.has(String(f.properties[idKey]))).length;
  if (missing) legend.push({ colour: NO_DATA, label: t('no_data'), count: missing });
  if (small?.size) legend.push({ colour: 'hatch', label: `${t('small_area')} ${formatNumber(minPopulation, 0)} ${t('small_area_residents')}`, count: small.size });
  return { colourOf, legend };
}

/** Whether an area is too small to rank: fewer residents than `minPopulation`, or none known. */
function isSmallArea(properties, populationKey, minPopulation) {
  if (!populationKey || !minPopulation) return false;
  const residents = properties?.[populationKey];
  return residents === null || residents === undefined || !(Number(residents) >= minPopulation);
}

/** The ids (as text) of the areas not ranked: the maps hatch them, the panels leave them out. */
export function smallAreas(features, idKey, populationKey, minPopulation) {
  return new Set(features.filter((f) => isSmallArea(f.properties, populationKey, minPopulation)).map((f) => String(f.properties[idKey])));
}

/** Centroid and area (in squared degrees, only to weigh) of a Polygon or MultiPolygon's outer rings. */
export function geometryCentroid(geometry) {
  let [cx, cy, total] = [0, 0, 0];
  for (const [ring] of polygonsOf(geometry)) {
    let [a, x, y] = [0, 0, 0];
    for (let i = 0; i < ring.length - 1; i += 1) {
      const [x0, y0] = ring[i];
      const [x1, y1] = ring[i + 1];
      const cross = x0 * y1 - x1 * y0;
      a += cross;
      x += (x0 + x1) * cross;
      y += (y0 + y1) * cross;
    }
    if (!a) continue;
    // The ring's centroid is (x, y) / 3a whatever its orientation; rings are weighed by |a|.
    cx += (x / (3 * a)) * Math.abs(a);
    cy += (y / (3 * a)) * Math.abs(a);
    total += Math.abs(a);
  }
  return total ? [cx / total, cy / total, total / 2] : [0, 0, 0];
}

/** The polygons of a Polygon or MultiPolygon, each a list of rings. */
export function polygonsOf(geometry) {
  return geometry?.type === 'Polygon' ? [geometry.coordinates] : geometry?.type === 'MultiPolygon' ? geometry.coordinates : [];
}

/** The centroid of each group of areas (a district), weighed by the areas' sizes: [name, [x, y]]. */
export function groupCentres(features, groupKey) {
  const groups = new Map();
  for (const feature of features) {
    const name = feature.properties[groupKey];
    if (name === null || name === undefined) continue;
    const [x, y, area] = geometryCentroid(feature.geometry);
    if (!area) continue;
    const sum = groups.get(name) ?? [0, 0, 0];
    groups.set(name, [sum[0] + x * area, sum[1] + y * area, sum[2] + area]);
  }
  return [...groups].map(([name, [x, y, area]]) => [name, [x / area, y / area]]);
}

/** Every position of a geometry, in order. */
export function positionsOf(geometry, visit) {
  if (!geometry) return;
  const walk = (coordinates) => {
    if (typeof coordinates[0] === 'number') visit(coordinates);
    else coordinates.forEach(walk);
  };
  walk(geometry.coordinates);
}

/** The legend as a list: a swatch, the range and how many areas fall in it. */
export function renderLegend(list, legend, note) {
  list.replaceChildren(
    ...legend.map((entry) => el('li', {},
      entry.colour === 'hatch'
        ? el('span', { class: 'swatch hatched', 'aria-hidden': 'true' })
        : el('span', { class: 'swatch', style: `background:${entry.colour}`, 'aria-hidden': 'true' }),
      ` ${entry.label} `,
      el('span', { class: 'text-muted small', text: `(${entry.count})` }),
    )),
    note ? el('li', { class: 'small text-muted', text: note }) : null,
  );
}
