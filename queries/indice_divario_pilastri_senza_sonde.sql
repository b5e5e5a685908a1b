-- title: Pilastri del divario digitale per area statistica, senza le sonde di connettività
-- title_en: Digital-divide pillars per statistical area, without the connectivity probes
-- period: 2021–2024
-- source: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: vedi il metodo
-- source_en: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: see the method
-- description: I quattro pilastri dell'indice composito del divario digitale (bisogno, connettività,
--   adozione dei servizi online, supporto), ciascuno da 0 a 100, dove più alto vuol dire più divario.
--   La connettività conta solo gli hotspot Wi-Fi pubblici: è la versione usata da
--   indice_divario_pilastri dove non ci sono sensori.
-- description_en: The four pillars of the composite digital-divide index (need, connectivity, uptake
--   of online services, support), each from 0 to 100, where higher means more divide.
-- unit: punteggio 0–100 (più alto = più divario)
-- unit_en: score 0–100 (higher = more divide)
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   quota_offline_attesi_pct = Adulti offline attesi [% degli adulti];
--   over_65_soli_pct = Over 65 che vivono soli [% degli over 65];
--   fragilita_complessiva = Fragilità complessiva [indice, 100 = media di Bologna];
--   hotspot_per_1000_residenti = Hotspot Wi-Fi pubblici [ogni 1.000 residenti];
--   certificati_per_1000_comune = Certificati ANPR del comune [ogni 1.000 residenti];
--   quota_entro_800m_pct = Residenti entro 800 m da un luogo di supporto [% dei residenti];
--   bisogno = Bisogno [punteggio 0–100]; connettivita = Connettività [punteggio 0–100];
--   adozione = Adozione dei servizi online [punteggio 0–100]; supporto = Supporto [punteggio 0–100]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   quota_offline_attesi_pct = Expected offline adults [% of adults];
--   over_65_soli_pct = Over-65s living alone [% of over-65s];
--   fragilita_complessiva = Overall fragility [index, 100 = Bologna average];
--   hotspot_per_1000_residenti = Public Wi-Fi hotspots [per 1,000 residents];
--   certificati_per_1000_comune = ANPR certificates of the comune [per 1,000 residents];
--   quota_entro_800m_pct = Residents within 800 m of a support place [% of residents];
--   bisogno = Need [score 0–100]; connettivita = Connectivity [score 0–100];
--   adozione = Uptake of online services [score 0–100]; supporto = Support [score 0–100]
-- polarity: higher_is_worse
-- sources: bologna.fragilita, bologna.aree_statistiche, bologna.zone, bologna.popolazione, bologna.hotspot_wifi, bologna.biblioteche, bologna.risorse_sociali, bologna.comuni_metropolitani, anpr.popolazione_residente, anpr.attivita_residenti
-- method: Ogni indicatore è normalizzato min–max con limiti fissi (non quelli osservati, così i valori
--   restano confrontabili nel tempo), troncato a [0, 100] e orientato in modo che più alto voglia dire
--   più divario. Bisogno = media di: quota di adulti offline attesi, limiti 10–35% (residenti_offline_attesi);
--   over 65 che vivono soli, 10–50% degli over 65 (anziani_per_area); indice complessivo di fragilità, 80–120
--   (fragilita_per_area). Connettività = 100 − hotspot Wi-Fi ogni 1.000 residenti, 0–5
--   (hotspot_wifi_per_area). Adozione = 100 − certificati ANPR online ogni 1.000 residenti del comune
--   di Bologna, 100–500 (anpr_certificati_per_1000): nei dati dimostrativi non ci sono log dei servizi
--   per area, quindi è lo stesso valore comunale per tutte le aree, non distingue tra loro e nell'indice non pesa; con i log
--   dei servizi va sostituito dalla quota di richieste online per area (servizi_online_per_area).
--   Supporto = 100 − quota di residenti entro 800 m da biblioteca o punto di facilitazione, 0–100%
--   (copertura_supporto_800m). Vuoto dove manca un indicatore (le 11 aree escluse dagli indici di
--   fragilità).
-- method_en: Each indicator is min–max normalised with fixed bounds (not the observed ones, so values
--   stay comparable over time), clipped to [0, 100] and oriented so that higher means more divide.
--   Need = mean of: share of expected offline adults, bounds 10–35% (residenti_offline_attesi);
--   over-65s living alone, 10–50% of over-65s (anziani_per_area); overall fragility index, 80–120
--   (fragilita_per_area). Connectivity = 100 − public Wi-Fi hotspots per 1,000 residents, 0–5
--   (hotspot_wifi_per_area). Uptake = 100 − ANPR online certificates per 1,000 residents of the comune
--   of Bologna, 100–500 (anpr_certificati_per_1000): the demo data have no service logs per area, so
--   it is the same city-wide value in every area, does not tell areas apart and carries no weight in
--   the index; with the service logs it is to be replaced by the share of requests made online per
--   area (servizi_online_per_area). Support = 100 − share of residents within 800 m of a library or
--   facilitation point, 0–100% (copertura_supporto_800m). Empty where an indicator is missing (the
--   11 areas excluded from the fragility indices).
-- method_version: 1.0
WITH valori AS (
    SELECT
        o.codice_area_statistica,
        o.area_statistica,
        o.quota_offline_attesi_pct,
        an.over_65_soli_pct,
        fr.fragilita_complessiva,
        h.hotspot_per_1000_residenti,
        (SELECT certificati_per_1000 FROM anpr_certificati_per_1000 WHERE cod_istat_comune = '037006') AS certificati_per_1000_comune,
        c.quota_entro_800m_pct
    FROM residenti_offline_attesi AS o
    JOIN anziani_per_area AS an ON an.codice_area_statistica = o.codice_area_statistica
    JOIN fragilita_per_area AS fr ON fr.codice_area_statistica = o.codice_area_statistica
    JOIN hotspot_wifi_per_area AS h ON h.codice_area_statistica = o.codice_area_statistica
    JOIN copertura_supporto_800m AS c ON c.codice_area_statistica = o.codice_area_statistica
),
normalizzati AS (
    -- least/greatest skip NULLs, so a missing value is kept missing explicitly.
    SELECT
        *,
        CASE WHEN quota_offline_attesi_pct IS NOT NULL
             THEN 100 * least(greatest((quota_offline_attesi_pct - 10.0) / (35.0 - 10.0), 0.0), 1.0) END AS n_offline,
        CASE WHEN over_65_soli_pct IS NOT NULL
             THEN 100 * least(greatest((over_65_soli_pct - 10.0) / (50.0 - 10.0), 0.0), 1.0) END AS n_over_65_soli,
        CASE WHEN fragilita_complessiva IS NOT NULL
             THEN 100 * least(greatest((fragilita_complessiva - 80.0) / (120.0 - 80.0), 0.0), 1.0) END AS n_fragilita,
        CASE WHEN hotspot_per_1000_residenti IS NOT NULL
             THEN 100 - 100 * least(greatest(hotspot_per_1000_residenti / 5.0, 0.0), 1.0) END AS n_hotspot,
        CASE WHEN certificati_per_1000_comune IS NOT NULL
             THEN 100 - 100 * least(greatest((certificati_per_1000_comune - 100.0) / (500.0 - 100.0), 0.0), 1.0) END AS n_certificati,
        CASE WHEN quota_entro_800m_pct IS NOT NULL
             THEN 100 - 100 * least(greatest(quota_entro_800m_pct / 100.0, 0.0), 1.0) END AS n_copertura
    FROM valori
)
SELECT
    codice_area_statistica,
    area_statistica,
    quota_offline_attesi_pct,
    over_65_soli_pct,
    fragilita_complessiva,
    hotspot_per_1000_residenti,
    certificati_per_1000_comune,
    quota_entro_800m_pct,
    round((n_offline + n_over_65_soli + n_fragilita) / 3.0, 2) AS bisogno,
    round(n_hotspot, 2) AS connettivita,
    round(n_certificati, 2) AS adozione,
    round(n_copertura, 2) AS supporto
FROM normalizzati
