-- title: Velocità e latenza misurate dalle sonde di connettività, per area statistica
-- title_en: Throughput and latency measured by connectivity probes, per statistical area
-- source: Sonde di connettività (simulate nella demo)
-- source_en: Connectivity probes (simulated in the demo)
-- description: Mediana degli ultimi 30 giorni di download, upload (Mbit/s) e latenza (ms) misurati
--   dalle sonde installate in scuole e biblioteche, per area statistica. Richiede i sensori (connettore
--   MQTT `sensori`): senza, la vista non è disponibile.
-- description_en: 30-day median of download, upload (Mbit/s) and latency (ms) measured by the probes
--   in schools and libraries, per statistical area. Needs the sensors (MQTT connector `sensori`):
--   without them the view is not available.
-- unit: Mbit/s, ms
-- unit_en: Mbit/s, ms
-- polarity: higher_is_better
-- sources: sensori.letture, bologna.sensori, bologna.aree_statistiche
-- method: Letture di sensori.letture (sensor_id, metric, value, ts) con metric download_mbps,
--   upload_mbps, latency_ms degli ultimi 30 giorni; ogni sonda è assegnata all'area che contiene la
--   sua posizione (bologna.sensori.geometry); mediana per area con approx_median.
-- method_en: Readings from sensori.letture (sensor_id, metric, value, ts) with metric
--   download_mbps, upload_mbps, latency_ms over the last 30 days; each probe is assigned to the
--   area that contains its position (bologna.sensori.geometry); median per area with approx_median.
-- method_version: 1.0
WITH sonde AS (
    -- Each probe placed in its area once, before its readings are read (not once per reading).
    SELECT s.sensor_id, a.codice_area_statistica, a.area_statistica
    FROM bologna.sensori AS s
    JOIN bologna.aree_statistiche AS a ON ST_Contains(a.geometry, s.geometry)
    WHERE s.kind = 'connectivity_probe'
)
SELECT
    p.codice_area_statistica,
    p.area_statistica,
    count(DISTINCT p.sensor_id) AS sonde,
    approx_median(CASE WHEN l.metric = 'download_mbps' THEN l.value END) AS download_mbps,
    approx_median(CASE WHEN l.metric = 'upload_mbps' THEN l.value END) AS upload_mbps,
    approx_median(CASE WHEN l.metric = 'latency_ms' THEN l.value END) AS latenza_ms
FROM sensori.letture AS l
JOIN sonde AS p ON p.sensor_id = l.sensor_id
WHERE l.metric IN ('download_mbps', 'upload_mbps', 'latency_ms')
  AND l.ts >= now() - INTERVAL '30 days'
GROUP BY p.codice_area_statistica, p.area_statistica
