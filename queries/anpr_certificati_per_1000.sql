-- title: Certificati ANPR online ogni 1.000 residenti, comuni della Città metropolitana
-- title_en: ANPR online certificates per 1,000 residents, comuni of the metropolitan city
-- period: al 21/11/2024
-- source: ANPR, Ministero dell’Interno (CC0); ISTAT
-- source_en: ANPR, Ministry of the Interior (CC0); ISTAT
-- description: Certificati anagrafici scaricati dai residenti sul portale ANPR (valori cumulati),
--   rapportati ai residenti, per i 55 comuni della Città metropolitana di Bologna.
-- description_en: Registry certificates downloaded by residents from the ANPR portal (cumulative),
--   per 1,000 residents, for the 55 comuni of the metropolitan city of Bologna.
-- unit: certificati ogni 1.000 residenti
-- unit_en: certificates per 1,000 residents
-- columns: cod_istat_comune = Codice ISTAT; comune = Comune; residenti = Residenti [persone];
--   certificati = Certificati [certificati];
--   certificati_per_1000 = Certificati [ogni 1.000 residenti]
-- columns_en: cod_istat_comune = ISTAT code; comune = Comune (municipality);
--   residenti = Residents [persons]; certificati = Certificates [certificates];
--   certificati_per_1000 = Certificates [per 1,000 residents]
-- polarity: higher_is_better
-- sources: bologna.comuni_metropolitani, anpr.popolazione_residente, anpr.attivita_residenti
-- method: CERTIFICATI × 1000 / RESIDENTI, dati ANPR al 21-11-2024, join sul codice ISTAT del comune.
-- method_en: CERTIFICATI × 1000 / RESIDENTI, ANPR data as of 21-11-2024, joined on the comune's
--   ISTAT code.
SELECT
    c.com_istat_code AS cod_istat_comune,
    p.comune,
    p.residenti,
    a.certificati,
    round(a.certificati * 1000.0 / p.residenti, 4) AS certificati_per_1000
FROM bologna.comuni_metropolitani AS c
JOIN anpr.popolazione_residente AS p ON p.cod_istat_comune = c.com_istat_code
JOIN anpr.attivita_residenti AS a ON a.cod_istat_comune = c.com_istat_code
ORDER BY c.com_istat_code
