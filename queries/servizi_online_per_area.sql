-- title: Richieste di servizi fatte online, per area statistica e fascia d'età
-- title_en: Service requests made online, per statistical area and age band
-- period: 2023
-- source: Log dei servizi comunali (simulati nella demo)
-- source_en: Municipal service logs (simulated in the demo)
-- description: Quota delle richieste di servizi comunali (certificati, pagamenti PagoPA, ricariche
--   mensa, cambi di residenza) fatte online invece che allo sportello o a un punto di facilitazione,
--   per area statistica e fascia d'età del richiedente. Richiede i log dei servizi (connettore
--   PostgreSQL `service_logs`): senza, la vista non è disponibile.
-- description_en: Share of municipal service requests (certificates, PagoPA payments, school-canteen
--   top-ups, changes of residence) made online rather than at a desk or a facilitation point, per
--   statistical area and the requester's age band. Needs the service logs (PostgreSQL connector
--   `service_logs`): without them the view is not available.
-- unit: % delle richieste
-- unit_en: % of requests
-- columns: codice_area_statistica = Codice area; fascia_eta = Fascia d'età;
--   richieste = Richieste [richieste]; online = Richieste online [richieste];
--   quota_online_pct = Richieste fatte online [% delle richieste]
-- columns_en: codice_area_statistica = Area code; fascia_eta = Age band;
--   richieste = Requests [requests]; online = Online requests [requests];
--   quota_online_pct = Requests made online [% of requests]
-- polarity: higher_is_better
-- sources: service_logs.eventi
-- method: Tutti gli eventi di service_logs.eventi (colonne area_statistica, il codice dell'area,
--   fascia_eta, canale: online, sportello o punto_facilitazione, servizio); gli accessi SPID/CIE
--   (servizio 'accesso_spid_cie') non sono richieste e sono esclusi. quota_online_pct = richieste con
--   canale 'online' × 100 / richieste. La riga con fascia_eta = 'totale' somma tutte le fasce.
-- method_en: All the events in service_logs.eventi (columns area_statistica, the area code;
--   fascia_eta; canale, which is online, sportello or punto_facilitazione; servizio); SPID/CIE
--   logins (servizio 'accesso_spid_cie') are not requests and are excluded. quota_online_pct =
--   requests with canale 'online' × 100 / requests. The row with fascia_eta = 'totale' sums all the
--   bands.
-- method_version: 1.0
WITH richieste AS (
    SELECT area_statistica AS codice_area_statistica, fascia_eta, canale
    FROM service_logs.eventi
    WHERE servizio <> 'accesso_spid_cie'
),
per_fascia AS (
    SELECT codice_area_statistica, fascia_eta, count(*) AS richieste,
           sum(CASE WHEN canale = 'online' THEN 1 ELSE 0 END) AS online
    FROM richieste
    GROUP BY codice_area_statistica, fascia_eta
    UNION ALL
    SELECT codice_area_statistica, 'totale' AS fascia_eta, count(*) AS richieste,
           sum(CASE WHEN canale = 'online' THEN 1 ELSE 0 END) AS online
    FROM richieste
    GROUP BY codice_area_statistica
)
SELECT
    codice_area_statistica,
    fascia_eta,
    richieste,
    online,
    round(online * 100.0 / richieste, 2) AS quota_online_pct
FROM per_fascia
