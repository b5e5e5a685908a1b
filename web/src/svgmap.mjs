// The choropleth drawn as SVG: what a phone shows first. It needs none of MapLibre's code (about
// 290 KiB compressed, seconds of a phone's processor), so the map is there at once; the
// interactive map (zoom, two-finger pan) is loaded when the user asks for it. Same interface as
// map.mjs's Choropleth, so the page drives either.

import { t } from './i18n.mjs';
import { classify, smallAreas, polygonsOf, positionsOf, groupCentres, NO_DATA } from './shapes.mjs';

const SVG = 'http://www.w3.org/2000/svg';
/** The drawing's width in its own units; the height follows the areas' proportions. */
const WIDTH = 1000;

function svg(name, attributes = {}, text = null) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) {
    if (value !== undefined && value !== null) element.setAttribute(key, String(value));
  }
  if (text !== null) element.textContent = text;
  return element;
}

export class StaticChoropleth {
  constructor(container, { areasUrl, idKey, nameKey, onSelect, populationKey, minPopulation, groupKey }) {
    this.container = container;
    this.idKey = idKey;
    this.nameKey = nameKey;
    this.populationKey = populationKey;
    this.minPopulation = minPopulation;
    this.groupKey = groupKey;
    this.onSelect = onSelect;
    this.values = new Map();
    this.selected = null;
    this.pointLayers = new Map();
    this.ready = fetch(areasUrl).then((r) => {
      if (!r.ok) throw new Error(`${areasUrl}: ${r.status}`);
      return r.json();
    }).then((geojson) => this.addAreas(geojson));
  }

  addAreas(geojson) {
    this.features = geojson.features;
    this.small = smallAreas(this.features, this.idKey, this.populationKey, this.minPopulation);
    // Longitude scaled by the cosine of the mid latitude: the shapes keep their proportions.
    let [minX, minY, maxX, maxY] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const feature of this.features) {
      positionsOf(feature.geometry, ([x, y]) => {
        minX = Math.min(minX, x); maxX = Math.max(maxX, x);
        minY = Math.min(minY, y); maxY = Math.max(maxY, y);
      });
    }
    const k = Math.cos((((minY + maxY) / 2) * Math.PI) / 180);
    const scale = WIDTH / ((maxX - minX) * k || 1);
    this.toUser = ([x, y]) => [(x - minX) * k * scale, (maxY - y) * scale];
    const height = Math.max(1, (maxY - minY) * scale);
    // Focusable, as the interactive map's canvas is: the keyboard reaches the map, which then
    // becomes interactive (arrows move it, + and − zoom).
    this.svg = svg('svg', { viewBox: `0 0 ${WIDTH} ${height.toFixed(1)}`, class: 'static-map', role: 'img', tabindex: 0, 'aria-label': `${this.container.getAttribute('aria-label') ?? t('map')}` });
    const defs = svg('defs');
    const hatch = svg('pattern', { id: 'static-hatch', width: 10, height: 10, patternUnits: 'userSpaceOnUse', patternTransform: 'rotate(45)' });
    hatch.append(svg('rect', { width: 3, height: 10, fill: '#333', 'fill-opacity': 0.8 }));
    defs.append(hatch);
    this.areasGroup = svg('g', { class: 'areas' });
    this.paths = new Map();
    for (const feature of this.features) {
      const id = String(feature.properties[this.idKey]);
      const path = svg('path', { d: this.pathOf(feature.geometry), fill: NO_DATA, 'fill-rule': 'evenodd', 'data-area': id });
      this.paths.set(id, path);
      this.areasGroup.append(path);
    }
    const hatched = svg('g', { class: 'hatched', 'pointer-events': 'none' });
    for (const id of this.small) {
      const feature = this.features.find((f) => String(f.properties[this.idKey]) === id);
      hatched.append(svg('path', { d: this.pathOf(feature.geometry), fill: 'url(#static-hatch)', 'fill-rule': 'evenodd' }));
    }
    this.selectedGroup = svg('g', { class: 'selected', 'pointer-events': 'none' });
    this.pointsGroup = svg('g', { class: 'points' });
    const labels = svg('g', { class: 'labels', 'pointer-events': 'none', 'aria-hidden': 'true' });
    this.groupLabels = this.groupKey ? groupCentres(this.features, this.groupKey).map(([name, centre]) => {
      const [x, y] = this.toUser(centre);
      const label = svg('text', { x: x.toFixed(1), y: y.toFixed(1), class: 'district-label', 'text-anchor': 'middle', 'dominant-baseline': 'middle', 'data-group': String(name) }, String(name));
      labels.append(label);
      return label;
    }) : [];
    this.svg.append(defs, this.areasGroup, hatched, this.selectedGroup, this.pointsGroup, labels);
    this.svg.addEventListener('click', (event) => {
      const path = event.target.closest?.('path[data-area]');
      if (path) this.onSelect?.(this.featureOf(path.dataset.area).properties[this.idKey]);
    });
    this.container.replaceChildren(this.svg);
    return geojson;
  }

  pathOf(geometry) {
    return polygonsOf(geometry).map((rings) => rings.map((ring) => `M${ring.map((p) => this.toUser(p).map((v) => v.toFixed(1)).join(',')).join('L')}Z`).join('')).join('');
  }

  featureOf(id) {
    return this.features.find((f) => String(f.properties[this.idKey]) === String(id));
  }

  /** Colour the areas by `rows[valueKey]`, matched on `rows[idKey]`. Returns the legend's classes. */
  show(rows, { idKey, valueKey, classes, breaks, higherIsBetter, decimals, unit }) {
    this.values = new Map(rows.map((r) => [String(r[idKey]), r[valueKey]]));
    this.unit = unit;
    const { colourOf, legend } = classify(this.values, this.features, this.idKey, { classes, breaks, higherIsBetter, decimals }, this);
    for (const [id, path] of this.paths) path.setAttribute('fill', colourOf(id));
    return legend;
  }

  /** Resolves once the browser has painted what was last set. */
  idle() {
    return new Promise((resolve) => requestAnimationFrame(() => resolve()));
  }

  select(id) {
    this.selected = id;
    const feature = id === null || id === undefined ? null : this.featureOf(id);
    this.selectedGroup.replaceChildren(...(feature ? [svg('path', { d: this.pathOf(feature.geometry), fill: 'none', stroke: '#ff9900', 'stroke-width': 5 })] : []));
  }

  /** A drawing shows the whole city: nothing to zoom (the interactive map zooms). */
  zoomToArea() {}

  /** A point layer from GeoJSON, drawn as circles; `visible` sets its initial visibility. */
  addPoints(name, geojson, { colour, labelKey, visible }) {
    this.pointLayers.get(name)?.group.remove();
    const group = svg('g', { 'data-layer': name, display: visible ? null : 'none' });
    for (const feature of geojson.features) {
      if (feature.geometry?.type !== 'Point') continue;
      const [x, y] = this.toUser(feature.geometry.coordinates);
      const circle = svg('circle', { cx: x.toFixed(1), cy: y.toFixed(1), r: 6, fill: colour, stroke: '#ffffff', 'stroke-width': 2 });
      circle.append(svg('title', {}, String(feature.properties[labelKey] ?? '')));
      group.append(circle);
    }
    this.pointsGroup.append(group);
    this.pointLayers.set(name, { group, geojson, labelKey });
  }

  setPointsVisible(name, visible) {
    const layer = this.pointLayers.get(name);
    if (layer) layer.group.setAttribute('display', visible ? 'inline' : 'none');
  }

  /** A place found by the search: ringed on the drawing. */
  flyToPoint(coordinates) {
    const [x, y] = this.toUser(coordinates);
    this.pointsGroup.querySelector('.found')?.remove();
    this.pointsGroup.append(svg('circle', { class: 'found', cx: x.toFixed(1), cy: y.toFixed(1), r: 14, fill: 'none', stroke: '#ff9900', 'stroke-width': 4 }));
  }

  setLanguage() {
    this.svg?.setAttribute('aria-label', this.container.getAttribute('aria-label') ?? t('map'));
  }

  /** Screen position (CSS pixels, relative to the map's container) of a longitude/latitude. */
  project(lngLat) {
    const [x, y] = this.toUser(lngLat);
    const point = this.svg.createSVGPoint();
    point.x = x;
    point.y = y;
    const screen = point.matrixTransform(this.svg.getScreenCTM());
    const box = this.container.getBoundingClientRect();
    return { x: screen.x - box.left, y: screen.y - box.top };
  }

  /** The ids of the areas drawn: all of them. */
  renderedAreaIds() {
    return this.features.map((f) => f.properties[this.idKey]);
  }
}
