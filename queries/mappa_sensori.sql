-- title: Sensori della città
-- title_en: City sensors
-- description: Sonde di connettività, contapersone e altri sensori registrati, con l'ora
--   dell'ultima lettura ricevuta. Richiede i sensori (connettore MQTT `sensori`): senza, lo strato
--   non è disponibile.
-- description_en: Connectivity probes, people counters and other registered sensors, with the time
--   of the last reading received. Needs the sensors (MQTT connector `sensori`): without them the
--   layer is not available.
-- unit: sensore
-- unit_en: sensor
-- polarity: neutral
-- sources: bologna.sensori, sensori.letture
-- method: Registro dei sensori (bologna.sensori: sensor_id, kind, geometry) con l'ora dell'ultima
--   lettura di ciascuno in sensori.letture (nulla se non ne ha ancora inviate).
-- method_en: Register of the sensors (bologna.sensori: sensor_id, kind, geometry) with the time of
--   each one's last reading in sensori.letture (null if it has not sent any yet).
WITH ultime AS (
    SELECT sensor_id, max(ts) AS ultima_lettura, count(*) AS letture
    FROM sensori.letture
    GROUP BY sensor_id
)
SELECT s.sensor_id AS nome, s.kind AS tipo, u.ultima_lettura, coalesce(u.letture, 0) AS letture, s.geometry
FROM bologna.sensori AS s
LEFT JOIN ultime AS u ON u.sensor_id = s.sensor_id
