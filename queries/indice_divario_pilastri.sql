-- title: Pilastri del divario digitale per area statistica
-- title_en: Digital-divide pillars per statistical area
-- period: 2021–2024
-- source: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: vedi il metodo
-- source_en: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: see the method
-- description: I quattro pilastri dell'indice composito del divario digitale (bisogno, connettività,
--   adozione dei servizi online, supporto), ciascuno da 0 a 100, dove più alto vuol dire più divario.
-- description_en: The four pillars of the composite digital-divide index (need, connectivity, uptake
--   of online services, support), each from 0 to 100, where higher means more divide.
-- unit: punteggio 0–100 (più alto = più divario)
-- unit_en: score 0–100 (higher = more divide)
-- polarity: higher_is_worse
-- sources: bologna.fragilita, bologna.aree_statistiche, bologna.zone, bologna.popolazione, bologna.hotspot_wifi, bologna.biblioteche, bologna.risorse_sociali, bologna.comuni_metropolitani, anpr.popolazione_residente, anpr.attivita_residenti
-- method: Ogni indicatore è normalizzato min–max con limiti fissi (non quelli osservati, così i valori
--   restano confrontabili nel tempo), troncato a [0, 100] e orientato in modo che più alto voglia dire
--   più divario. Bisogno = media di: quota di adulti offline attesi, limiti 10–35% (residenti_offline_attesi);
--   over 65 che vivono soli, 10–50% (anziani_per_area); indice complessivo di fragilità, 80–120
--   (fragilita_per_area). Connettività = 100 − hotspot Wi-Fi ogni 1.000 residenti, 0–5
--   (hotspot_wifi_per_area). Adozione = 100 − certificati ANPR online ogni 1.000 residenti del comune
--   di Bologna, 100–500 (anpr_certificati_per_1000): nei dati dimostrativi non ci sono log dei servizi
--   per area, quindi è lo stesso valore comunale per tutte le aree e non distingue tra loro; con i log
--   dei servizi va sostituito dalla quota di richieste online per area (servizi_online_per_area).
--   Supporto = 100 − quota di residenti entro 800 m da biblioteca o punto di facilitazione, 0–100%
--   (copertura_supporto_800m). Vuoto dove manca un indicatore (le 11 aree escluse dagli indici di
--   fragilità).
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
