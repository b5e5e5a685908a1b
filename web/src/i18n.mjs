// Interface strings, Italian first, English second. Dashboard texts come from the dashboards'
// own `title` / `title_en` keys and the saved queries' metadata.

const STRINGS = {
  skip: ['Vai al contenuto', 'Skip to content'],
  tagline: ['Comune di Bologna · persone, servizi e divario digitale', 'Comune di Bologna · people, services and the digital divide'],
  nav: ['Cruscotti', 'Dashboards'],
  map: ['Mappa', 'Map'],
  indicator: ['Indicatore', 'Indicator'],
  search: ["Cerca un'area o un luogo", 'Find an area or a place'],
  find: ['Trova', 'Find'],
  map_help: [
    "Trascina o usa le frecce per spostare la mappa, + e − per lo zoom; clicca un'area, o sceglila nella tabella qui sotto, per vederne i dati.",
    'Drag or use the arrow keys to move the map, + and − to zoom; click an area, or choose it in the table below, to see its data.',
  ],
  legend: ['Legenda', 'Legend'],
  layers: ['Luoghi sulla mappa', 'Places on the map'],
  map_table: ['Tabella dei dati della mappa', 'Data table of the map'],
  area: ['Area selezionata', 'Selected area'],
  area_none: [
    "Nessuna area selezionata: clicca un'area sulla mappa o scegline una nella tabella dei dati.",
    'No area selected: click an area on the map or choose one in the data table.',
  ],
  panels: ['Indicatori della città', 'City indicators'],
  footer_data: [
    "Dati: Comune di Bologna (CC BY 4.0), confini ISTAT via openpolis (CC BY), ANPR – Ministero dell'Interno (CC0).",
    'Data: Comune di Bologna (CC BY 4.0), ISTAT boundaries via openpolis (CC BY), ANPR – Ministero dell’Interno (CC0).',
  ],
  footer_sql: ['Interroga i dati in SQL', 'Query the data in SQL'],
  footer_queries: ['Indicatori e metodi (JSON)', 'Indicators and methods (JSON)'],
  footer_status: ['Stato delle fonti (JSON)', 'Source status (JSON)'],
  language: ['English', 'Italiano'],
  no_data: ['dato non disponibile', 'no data'],
  higher_worse: ['valori più alti = situazione peggiore', 'higher values = worse'],
  higher_better: ['valori più alti = situazione migliore', 'higher values = better'],
  updated: ['Dati aggiornati al', 'Data updated on'],
  stale: ['Fonte non aggiornata', 'Source out of date'],
  stale_detail: ['fonti non aggiornate o mancanti', 'sources out of date or missing'],
  unavailable: ['Non disponibili', 'Not available'],
  unavailable_suffix: ['(non disponibile)', '(not available)'],
  unavailable_panel: ['Dati non disponibili', 'Data not available'],
  needs: ['Motivo', 'Reason'],
  download_csv: ['Scarica i dati (CSV)', 'Download the data (CSV)'],
  data_table: ['Tabella dei dati', 'Data table'],
  method: ['Metodo', 'Method'],
  method_version: ['versione del metodo', 'method version'],
  rank: ['posizione', 'rank'],
  rank_of: ['su', 'of'],
  rank_note: ['1 = valore più alto', '1 = highest value'],
  select: ['Seleziona', 'Select'],
  selected: ['selezionata', 'selected'],
  value: ['Valore', 'Value'],
  name: ['Nome', 'Name'],
  area_indicators: ['Indicatori dell’area', 'Indicators of the area'],
  series: ['Andamento nel tempo', 'Over time'],
  not_found: ['Nessun risultato per', 'No result for'],
  loading: ['Caricamento…', 'Loading…'],
  error: ['Errore', 'Error'],
  classes_quantile: ['classi per quantili (stesso numero di aree per classe)', 'quantile classes (same number of areas per class)'],
  classes_fixed: ['classi fisse', 'fixed classes'],
  close: ['Chiudi', 'Close'],
};

let language = 'it';

export function setLanguage(lang) {
  language = lang === 'en' ? 'en' : 'it';
  document.documentElement.lang = language;
  for (const element of document.querySelectorAll('[data-i18n]')) {
    element.textContent = t(element.dataset.i18n);
  }
}

export function lang() {
  return language;
}

/** An interface string in the current language. */
export function t(key) {
  const pair = STRINGS[key];
  if (!pair) return key;
  return language === 'en' ? pair[1] : pair[0];
}

/** A configured or metadata text: `object[key + '_en']` in English when present, else `object[key]`. */
export function pick(object, key) {
  if (!object) return '';
  if (language === 'en' && object[`${key}_en`]) return object[`${key}_en`];
  return object[key] ?? '';
}

const numberFormats = new Map();

/** A number in the current language's format, with a fixed number of decimals. */
export function formatNumber(value, decimals = 1) {
  if (value === null || value === undefined || Number.isNaN(value)) return t('no_data');
  const locale = language === 'en' ? 'en-GB' : 'it-IT';
  const key = `${locale}:${decimals}`;
  if (!numberFormats.has(key)) {
    numberFormats.set(key, new Intl.NumberFormat(locale, { minimumFractionDigits: decimals, maximumFractionDigits: decimals }));
  }
  return numberFormats.get(key).format(value);
}

export function formatDate(iso) {
  if (!iso) return '—';
  const locale = language === 'en' ? 'en-GB' : 'it-IT';
  return new Intl.DateTimeFormat(locale, { dateStyle: 'medium', timeStyle: 'short' }).format(new Date(iso));
}
