// The choropleth: the dashboard's areas from GeoJSON coloured by one indicator, a legend,
// a hover tooltip, point layers, a highlighted selected area. MapLibre GL JS, no basemap unless
// the dashboard configures one, so nothing is fetched from elsewhere.

import { Map as MapLibre, NavigationControl, Popup, LngLatBounds, Marker, prewarm } from '/assets/vendor/maplibre-gl/maplibre-gl.mjs';
import { t, formatNumber, lang, city } from './i18n.mjs';
import { el } from './util.mjs';
import { classify, smallAreas, groupCentres, positionsOf, NO_DATA } from './shapes.mjs';

// Start MapLibre's worker now, while the page asks the API for the dashboard, rather than when
// the map is created: loading the worker is a large part of the time to the first view.
prewarm();

/** Diagonal hatching for the areas that are not ranked (too few residents). */
function hatchImage(size = 8) {
  const data = new Uint8Array(size * size * 4);
  for (let y = 0; y < size; y += 1) {
    for (let x = 0; x < size; x += 1) {
      const on = (x + y) % size < 2;
      data.set(on ? [51, 51, 51, 200] : [0, 0, 0, 0], (y * size + x) * 4);
    }
  }
  return { width: size, height: size, data };
}

/** MapLibre's own texts (control titles, gesture hints) in the page's language. */
const MAP_TEXTS = {
  it: {
    'AttributionControl.ToggleAttribution': 'Mostra o nascondi le attribuzioni',
    'Map.Title': 'Mappa',
    'NavigationControl.ResetBearing': 'Trascina per ruotare la mappa, clicca per tornare al nord',
    'NavigationControl.ZoomIn': 'Aumenta lo zoom',
    'NavigationControl.ZoomOut': 'Riduci lo zoom',
    'Popup.Close': 'Chiudi',
    'CooperativeGesturesHandler.WindowsHelpText': 'Usa Ctrl + rotellina per lo zoom della mappa',
    'CooperativeGesturesHandler.MacHelpText': 'Usa ⌘ + rotellina per lo zoom della mappa',
    'CooperativeGesturesHandler.MobileHelpText': 'Usa due dita per spostare la mappa',
  },
  en: {},
};

/** A touch screen without a fine pointer: one finger scrolls the page, two move the map. */
export const touchFirst = () => window.matchMedia('(pointer: coarse)').matches;

export class Choropleth {
  constructor(container, { areasUrl, idKey, nameKey, basemap, onSelect, populationKey, minPopulation, groupKey }) {
    this.groupKey = groupKey;
    this.idKey = idKey;
    this.nameKey = nameKey;
    this.populationKey = populationKey;
    this.minPopulation = minPopulation;
    this.onSelect = onSelect;
    this.values = new Map();
    this.selected = null;
    this.pointLayers = new Map();
    const style = { version: 8, sources: {}, layers: [{ id: 'background', type: 'background', paint: { 'background-color': '#eef1f4' } }] };
    if (basemap) {
      style.sources.basemap = { type: 'raster', tiles: [basemap.tiles], tileSize: 256, attribution: basemap.attribution };
      style.layers.push({ id: 'basemap', type: 'raster', source: 'basemap', paint: { 'raster-opacity': 0.6 } });
    }
    this.map = new MapLibre({ container, style, center: city.center ?? [12.5, 42.5], zoom: city.zoom ?? 5, attributionControl: basemap ? { compact: true } : false, dragRotate: false, pitchWithRotate: false,
      // No cross-fade of tiles: the first view is drawn (and `idle`) as soon as its data is.
      fadeDuration: 0,
      locale: MAP_TEXTS[lang()] ?? {},
      cooperativeGestures: touchFirst() });
    this.map.addControl(new NavigationControl({ showCompass: false }), 'top-right');
    this.map.getCanvas().setAttribute('aria-label', container.getAttribute('aria-label') ?? 'map');
    this.popup = new Popup({ closeButton: false, closeOnClick: false, className: 'area-tooltip' });
    this.loaded = new Promise((resolve) => this.map.on('load', resolve));
    this.areas = fetch(areasUrl).then((r) => {
      if (!r.ok) throw new Error(`${areasUrl}: ${r.status}`);
      return r.json();
    });
    this.ready = Promise.all([this.loaded, this.areas]).then(([, geojson]) => this.addAreas(geojson));
  }

  addAreas(geojson) {
    this.features = geojson.features;
    this.map.addSource('areas', { type: 'geojson', data: geojson, promoteId: this.idKey });
    this.map.addLayer({ id: 'areas-fill', type: 'fill', source: 'areas', paint: { 'fill-color': ['coalesce', ['feature-state', 'colour'], NO_DATA], 'fill-opacity': 0.85 } });
    // The areas not ranked, by id (as text): the map hatches them, the panels leave them out.
    this.small = smallAreas(geojson.features, this.idKey, this.populationKey, this.minPopulation);
    if (this.small.size) {
      this.map.addImage('hatch', hatchImage());
      this.map.addLayer({ id: 'areas-small', type: 'fill', source: 'areas', filter: ['in', ['to-string', ['get', this.idKey]], ['literal', [...this.small]]], paint: { 'fill-pattern': 'hatch' } });
    }
    this.map.addLayer({ id: 'areas-line', type: 'line', source: 'areas', paint: { 'line-color': '#ffffff', 'line-width': 0.8 } });
    this.map.addLayer({
      id: 'areas-selected', type: 'line', source: 'areas',
      paint: { 'line-color': '#ff9900', 'line-width': ['case', ['boolean', ['feature-state', 'selected'], false], 4, 0] },
    });
    if (this.groupKey) this.addGroupLabels(geojson.features);
    const bounds = new LngLatBounds();
    for (const feature of geojson.features) extendBounds(bounds, feature.geometry);
    this.bounds = bounds;
    this.map.fitBounds(bounds, { padding: 20, animate: false });
    this.map.on('mousemove', 'areas-fill', (event) => this.hover(event));
    this.map.on('mouseleave', 'areas-fill', () => { this.map.getCanvas().style.cursor = ''; this.popup.remove(); });
    this.map.on('click', 'areas-fill', (event) => {
      // On a touch screen the tooltip would stay over the map: the details open in the sheet.
      this.popup.remove();
      const feature = event.features?.[0];
      if (feature) this.onSelect?.(feature.properties[this.idKey]);
    });
    return geojson;
  }

  /** The name of each group of areas (a district) at the centroid of its areas. */
  addGroupLabels(features) {
    this.groupLabels = groupCentres(features, this.groupKey).map(([name, centre]) => {
      const element = el('span', { class: 'district-label', 'aria-hidden': 'true', dataset: { group: String(name) }, text: String(name) });
      return new Marker({ element, anchor: 'center' }).setLngLat(centre).addTo(this.map);
    });
  }

  /** The controls' titles in the page's language, after a language switch. */
  setLanguage(language) {
    const texts = { 'NavigationControl.ZoomIn': 'Zoom in', 'NavigationControl.ZoomOut': 'Zoom out', ...(MAP_TEXTS[language] ?? {}) };
    for (const [selector, key] of [['.maplibregl-ctrl-zoom-in', 'NavigationControl.ZoomIn'], ['.maplibregl-ctrl-zoom-out', 'NavigationControl.ZoomOut']]) {
      const button = this.map.getContainer().querySelector(selector);
      if (!button) continue;
      button.title = texts[key];
      button.setAttribute('aria-label', texts[key]);
    }
  }

  hover(event) {
    const feature = event.features?.[0];
    if (!feature) return;
    this.map.getCanvas().style.cursor = 'pointer';
    const id = feature.properties[this.idKey];
    const value = this.values.get(String(id));
    const text = `${feature.properties[this.nameKey]}: ${value === undefined || value === null ? t('no_data') : formatNumber(value, this.decimals)}${this.unit ? ` ${this.unit}` : ''}`;
    this.popup.setLngLat(event.lngLat).setText(text).addTo(this.map);
  }

  /** Colour the areas by `rows[valueKey]`, matched on `rows[idKey]`. Returns the legend's classes. */
  show(rows, { idKey, valueKey, classes, breaks, higherIsBetter, decimals, unit }) {
    this.values = new Map(rows.map((r) => [String(r[idKey]), r[valueKey]]));
    this.decimals = decimals;
    this.unit = unit;
    const { colourOf, legend } = classify(this.values, this.features, this.idKey, { classes, breaks, higherIsBetter, decimals }, this);
    for (const feature of this.features) {
      const id = feature.properties[this.idKey];
      this.map.setFeatureState({ source: 'areas', id }, { colour: colourOf(id), value: this.values.get(String(id)) ?? null });
    }
    return legend;
  }

  /** Resolves once the map has drawn what was last set. */
  idle() {
    return new Promise((resolve) => {
      this.map.once('idle', resolve);
      this.map.triggerRepaint();
    });
  }

  select(id) {
    if (this.selected !== null) this.map.setFeatureState({ source: 'areas', id: this.selected }, { selected: false });
    this.selected = id;
    if (id === null || id === undefined) return;
    this.map.setFeatureState({ source: 'areas', id }, { selected: true });
  }

  zoomToArea(id) {
    const feature = this.features.find((f) => String(f.properties[this.idKey]) === String(id));
    if (!feature) return;
    const bounds = new LngLatBounds();
    extendBounds(bounds, feature.geometry);
    this.map.fitBounds(bounds, { padding: 60, maxZoom: 15, duration: 600 });
  }

  /** A point layer from GeoJSON, drawn as circles; `visible` sets its initial visibility. */
  addPoints(name, geojson, { colour, labelKey, visible }) {
    const id = `points-${name}`;
    this.map.addSource(id, { type: 'geojson', data: geojson });
    this.map.addLayer({
      id, type: 'circle', source: id,
      layout: { visibility: visible ? 'visible' : 'none' },
      paint: { 'circle-radius': 5, 'circle-color': colour, 'circle-stroke-color': '#ffffff', 'circle-stroke-width': 1.5 },
    });
    this.pointLayers.set(name, { id, geojson, labelKey });
    this.map.on('click', id, (event) => {
      const feature = event.features?.[0];
      if (!feature) return;
      new Popup({ closeButton: true }).setLngLat(feature.geometry.coordinates).setText(String(feature.properties[labelKey] ?? '')).addTo(this.map);
    });
    this.map.on('mouseenter', id, () => { this.map.getCanvas().style.cursor = 'pointer'; });
    this.map.on('mouseleave', id, () => { this.map.getCanvas().style.cursor = ''; });
  }

  setPointsVisible(name, visible) {
    const layer = this.pointLayers.get(name);
    if (layer) this.map.setLayoutProperty(layer.id, 'visibility', visible ? 'visible' : 'none');
  }

  flyToPoint(coordinates, label) {
    this.map.flyTo({ center: coordinates, zoom: 15, duration: 600 });
    new Popup({ closeButton: true }).setLngLat(coordinates).setText(label).addTo(this.map);
  }

  /** Screen position (CSS pixels, relative to the map's container) of a longitude/latitude. */
  project(lngLat) {
    return this.map.project(lngLat);
  }

  /** The ids of the areas drawn in the current view (for tests and the benchmark). */
  renderedAreaIds() {
    const ids = new Set(this.map.queryRenderedFeatures({ layers: ['areas-fill'] }).map((f) => f.properties[this.idKey]));
    return [...ids];
  }
}

function extendBounds(bounds, geometry) {
  positionsOf(geometry, (position) => bounds.extend(position));
}
