-- title: Pilastri del divario digitale per area statistica
-- title_en: Digital-divide pillars per statistical area
-- period: 2021–2024; sonde: ultimi 30 giorni
-- source: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT, sonde di connettività: vedi il metodo
-- source_en: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT, connectivity probes: see the method
-- description: I quattro pilastri dell'indice composito del divario digitale (bisogno, connettività,
--   adozione dei servizi online, supporto), ciascuno da 0 a 100, dove più alto vuol dire più divario.
--   La connettività usa le velocità misurate dalle sonde nelle aree che ne hanno una.
-- description_en: The four pillars of the composite digital-divide index (need, connectivity, uptake
--   of online services, support), each from 0 to 100, where higher means more divide. Connectivity
--   uses the speeds measured by the probes in the areas that have one.
-- unit: punteggio 0–100 (più alto = più divario)
-- unit_en: score 0–100 (higher = more divide)
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   quota_offline_attesi_pct = Adulti offline attesi [% degli adulti];
--   over_65_soli_pct = Over 65 che vivono soli [% degli over 65];
--   fragilita_complessiva = Fragilità complessiva [indice, 100 = media di Bologna];
--   hotspot_per_1000_residenti = Hotspot Wi-Fi pubblici [ogni 1.000 residenti];
--   download_sonde_mbps = Download misurato dalle sonde, mediana 30 giorni [Mbit/s];
--   certificati_per_1000_comune = Certificati ANPR del comune [ogni 1.000 residenti];
--   quota_entro_800m_pct = Residenti entro 800 m da un luogo di supporto [% dei residenti];
--   bisogno = Bisogno [punteggio 0–100]; connettivita = Connettività [punteggio 0–100];
--   adozione = Adozione dei servizi online [punteggio 0–100]; supporto = Supporto [punteggio 0–100]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   quota_offline_attesi_pct = Expected offline adults [% of adults];
--   over_65_soli_pct = Over-65s living alone [% of over-65s];
--   fragilita_complessiva = Overall fragility [index, 100 = Bologna average];
--   hotspot_per_1000_residenti = Public Wi-Fi hotspots [per 1,000 residents];
--   download_sonde_mbps = Download measured by the probes, 30-day median [Mbit/s];
--   certificati_per_1000_comune = ANPR certificates of the comune [per 1,000 residents];
--   quota_entro_800m_pct = Residents within 800 m of a support place [% of residents];
--   bisogno = Need [score 0–100]; connettivita = Connectivity [score 0–100];
--   adozione = Uptake of online services [score 0–100]; supporto = Support [score 0–100]
-- polarity: higher_is_worse
-- sources: indice_divario_pilastri_senza_sonde, connettivita_sonde_per_area
-- fallback: indice_divario_pilastri_senza_sonde
-- method: Come indice_divario_pilastri_senza_sonde (bisogno, adozione e supporto sono gli stessi),
--   tranne la connettività. Nelle aree con almeno una sonda di connettività la connettività è la
--   media di due indicatori: 100 − hotspot Wi-Fi ogni 1.000 residenti, limiti 0–5; e 100 − velocità
--   di download misurata (mediana degli ultimi 30 giorni, connettivita_sonde_per_area), limiti
--   30–300 Mbit/s (30 Mbit/s è la soglia della banda ultralarga). Nelle altre aree è il solo
--   indicatore degli hotspot. Senza il connettore dei sensori questa vista è calcolata da
--   indice_divario_pilastri_senza_sonde, che lo dice nella sua descrizione.
-- method_en: As indice_divario_pilastri_senza_sonde (need, uptake and support are the same),
--   except connectivity. In the areas with at least one connectivity probe, connectivity is the mean
--   of two indicators: 100 − public Wi-Fi hotspots per 1,000 residents, bounds 0–5; and 100 −
--   measured download speed (median of the last 30 days, connettivita_sonde_per_area), bounds
--   30–300 Mbit/s (30 Mbit/s is the ultra-broadband threshold). In the other areas it is the
--   hotspot indicator alone. Without the sensors' connector this view is computed by
--   indice_divario_pilastri_senza_sonde, which says so in its description.
-- method_version: 1.1
WITH sonde AS (
    SELECT
        codice_area_statistica,
        round(download_mbps, 1) AS download_mbps,
        100 - 100 * least(greatest((round(download_mbps, 1) - 30.0) / (300.0 - 30.0), 0.0), 1.0) AS n_velocita
    FROM connettivita_sonde_per_area
    WHERE download_mbps IS NOT NULL
)
SELECT
    b.codice_area_statistica,
    b.area_statistica,
    b.quota_offline_attesi_pct,
    b.over_65_soli_pct,
    b.fragilita_complessiva,
    b.hotspot_per_1000_residenti,
    s.download_mbps AS download_sonde_mbps,
    b.certificati_per_1000_comune,
    b.quota_entro_800m_pct,
    b.bisogno,
    -- The mean of the indicators an area has; the hotspot indicator alone where no probe measures.
    round(CASE
        WHEN s.n_velocita IS NULL THEN b.connettivita
        WHEN b.connettivita IS NULL THEN s.n_velocita
        ELSE (b.connettivita + s.n_velocita) / 2.0
    END, 2) AS connettivita,
    b.adozione,
    b.supporto
FROM indice_divario_pilastri_senza_sonde AS b
LEFT JOIN sonde AS s ON s.codice_area_statistica = b.codice_area_statistica
