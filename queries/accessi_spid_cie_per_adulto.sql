-- title: Accessi con SPID o CIE ogni adulto residente, per area statistica
-- title_en: SPID or CIE logins per adult resident, per statistical area
-- period: 2023
-- source: Log dei servizi comunali (simulati nella demo)
-- source_en: Municipal service logs (simulated in the demo)
-- description: Accessi ai servizi online del Comune con identità digitale (SPID o CIE) per adulto
--   residente. Richiede i log dei servizi (connettore PostgreSQL `service_logs`): senza,
--   la vista non è disponibile.
-- description_en: Logins to the Comune's online services with a digital identity (SPID or CIE) per
--   adult resident. Needs the service logs (PostgreSQL connector `service_logs`): without
--   them the view is not available.
-- unit: accessi per adulto
-- unit_en: logins per adult
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   adulti = Adulti (18 anni e più) [persone]; accessi_spid_cie = Accessi SPID/CIE [accessi];
--   accessi_per_adulto = Accessi SPID/CIE [per adulto]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   adulti = Adults (18 and over) [persons]; accessi_spid_cie = SPID/CIE logins [logins];
--   accessi_per_adulto = SPID/CIE logins [per adult]
-- polarity: higher_is_better
-- sources: service_logs.eventi, residenti_offline_attesi
-- method: Eventi di service_logs.eventi con servizio 'accesso_spid_cie' (tutto il periodo nei log), per
--   area del richiedente, divisi per gli adulti stimati dell'area (residenti_offline_attesi.adulti).
-- method_en: Events in service_logs.eventi with service 'accesso_spid_cie' (the whole period in the
--   logs), by the requester's area, divided by the area's estimated adults
--   (residenti_offline_attesi.adulti).
-- method_version: 1.0
WITH accessi AS (
    SELECT area_statistica AS codice_area_statistica, count(*) AS accessi
    FROM service_logs.eventi
    WHERE servizio = 'accesso_spid_cie'
    GROUP BY area_statistica
)
SELECT
    o.codice_area_statistica,
    o.area_statistica,
    o.adulti,
    coalesce(a.accessi, 0) AS accessi_spid_cie,
    round(coalesce(a.accessi, 0) * 1.0 / o.adulti, 3) AS accessi_per_adulto
FROM residenti_offline_attesi AS o
LEFT JOIN accessi AS a ON a.codice_area_statistica = o.codice_area_statistica
