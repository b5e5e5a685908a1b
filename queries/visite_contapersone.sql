-- title: Visite ai luoghi di supporto digitale (contapersone)
-- title_en: Visits to digital-support places (people counters)
-- period_column: giorno
-- source: Contapersone (simulati nella demo)
-- source_en: People counters (simulated in the demo)
-- description: Persone entrate ogni giorno nelle biblioteche e nei punti di facilitazione digitale
--   dotati di contapersone. Richiede i sensori (connettore MQTT `sensori`): senza, la vista non è
--   disponibile.
-- description_en: People entering the libraries and digital facilitation points that have a people
--   counter, per day. Needs the sensors (MQTT connector `sensori`): without them the view is not
--   available.
-- unit: visite al giorno
-- unit_en: visits per day
-- columns: giorno = Giorno; contapersone = Contapersone attivi [sensori];
--   visite = Visite [visite al giorno]
-- columns_en: giorno = Day; contapersone = Active people counters [sensors];
--   visite = Visits [visits per day]
-- polarity: higher_is_better
-- sources: sensori.letture, bologna.sensori
-- method: Somma giornaliera (giorni UTC) delle letture con metric 'people' dei sensori di tipo
--   'people_counter'. Solo giorni completi: il giorno in corso non è contato, perché un giorno a metà
--   sembrerebbe un calo.
-- method_en: Daily sum (UTC days) of the readings with metric 'people' from the sensors of kind
--   'people_counter'. Complete days only: the current day is not counted, because a half-finished
--   day would look like a drop.
-- method_version: 1.1
SELECT
    date_trunc('day', l.ts) AS giorno,
    count(DISTINCT l.sensor_id) AS contapersone,
    sum(l.value) AS visite
FROM sensori.letture AS l
JOIN bologna.sensori AS s ON s.sensor_id = l.sensor_id
WHERE l.metric = 'people' AND s.kind = 'people_counter'
  AND l.ts < date_trunc('day', now())
GROUP BY date_trunc('day', l.ts)
