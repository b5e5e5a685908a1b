-- title: Servizi ANPR online ogni 1.000 residenti, comuni della Città metropolitana
-- title_en: ANPR online services per 1,000 residents, comuni of the metropolitan city
-- period: al 21/11/2024
-- source: ANPR, Ministero dell’Interno (CC0); ISTAT
-- source_en: ANPR, Ministry of the Interior (CC0); ISTAT
-- description: Uso dei servizi online dell'Anagrafe nazionale (certificati, autocertificazioni,
--   visure, cambi di residenza, rettifiche) da parte dei residenti, ogni 1.000 residenti, per i 55
--   comuni della Città metropolitana di Bologna.
-- description_en: Residents' use of the national registry's online services (certificates,
--   self-declarations, record views, changes of residence, corrections) per 1,000 residents, for the
--   55 comuni of the metropolitan city of Bologna.
-- unit: operazioni ogni 1.000 residenti
-- unit_en: operations per 1,000 residents
-- columns: cod_istat_comune = Codice ISTAT; comune = Comune; residenti = Residenti [persone];
--   operazioni = Operazioni online [operazioni];
--   operazioni_per_1000 = Operazioni online [ogni 1.000 residenti];
--   certificati_per_1000 = Certificati [ogni 1.000 residenti];
--   autocertificazioni_per_1000 = Autocertificazioni [ogni 1.000 residenti];
--   visure_per_1000 = Visure [ogni 1.000 residenti];
--   cambi_residenza_per_1000 = Cambi di residenza [ogni 1.000 residenti];
--   rettifiche_per_1000 = Rettifiche [ogni 1.000 residenti]
-- columns_en: cod_istat_comune = ISTAT code; comune = Comune (municipality);
--   residenti = Residents [persons]; operazioni = Online operations [operations];
--   operazioni_per_1000 = Online operations [per 1,000 residents];
--   certificati_per_1000 = Certificates [per 1,000 residents];
--   autocertificazioni_per_1000 = Self-declarations [per 1,000 residents];
--   visure_per_1000 = Record checks [per 1,000 residents];
--   cambi_residenza_per_1000 = Changes of residence [per 1,000 residents];
--   rettifiche_per_1000 = Corrections [per 1,000 residents]
-- polarity: higher_is_better
-- sources: bologna.comuni_metropolitani, anpr.popolazione_residente, anpr.attivita_residenti
-- method: Conteggi cumulati ANPR al 21-11-2024 × 1000 / residenti ANPR, join sul codice ISTAT del
--   comune; totale = somma delle cinque voci come pubblicata da ANPR.
-- method_en: Cumulative ANPR counts as of 21-11-2024 × 1000 / ANPR residents, joined on the
--   comune's ISTAT code; total = sum of the five items as published by ANPR.
SELECT
    c.com_istat_code AS cod_istat_comune,
    p.comune,
    p.residenti,
    a.totale AS operazioni,
    round(a.totale * 1000.0 / p.residenti, 2) AS operazioni_per_1000,
    round(a.certificati * 1000.0 / p.residenti, 2) AS certificati_per_1000,
    round(a.autocertificazioni * 1000.0 / p.residenti, 2) AS autocertificazioni_per_1000,
    round(a.visure * 1000.0 / p.residenti, 2) AS visure_per_1000,
    round(a.cambi_residenza * 1000.0 / p.residenti, 2) AS cambi_residenza_per_1000,
    round(a.rettifiche * 1000.0 / p.residenti, 2) AS rettifiche_per_1000
FROM bologna.comuni_metropolitani AS c
JOIN anpr.popolazione_residente AS p ON p.cod_istat_comune = c.com_istat_code
JOIN anpr.attivita_residenti AS a ON a.cod_istat_comune = c.com_istat_code
