-- title: Bologna in sintesi
-- title_en: Bologna at a glance
-- period: 2021–2024
-- source: Comune di Bologna (CC BY 4.0); ISTAT, Cittadini e ICT 2024
-- source_en: Comune di Bologna (CC BY 4.0); ISTAT, Citizens and ICT 2024
-- description: Residenti, adulti offline attesi, residenti vicini a un luogo di supporto digitale e
--   hotspot Wi-Fi pubblici nell'intera città.
-- description_en: Residents, expected offline adults, residents near a digital-support place and
--   public Wi-Fi hotspots across the whole city.
-- unit: persone, %, hotspot
-- unit_en: persons, %, hotspots
-- polarity: neutral
-- sources: residenti_offline_attesi, copertura_supporto_800m, hotspot_wifi_per_area
-- method: Somme sulle 90 aree; le quote sono rapporti tra somme (adulti offline attesi / adulti delle
--   79 aree con dato; residenti entro 800 m / residenti). Nei dati pubblici le somme sono fatte sui
--   valori pubblicati: le celle soppresse per riservatezza restano fuori, così come dalle quote.
SELECT
    (SELECT sum(residenti) FROM residenti_offline_attesi) AS residenti,
    (SELECT sum(offline_attesi) FROM residenti_offline_attesi) AS adulti_offline_attesi,
    (SELECT round(sum(offline_attesi) * 100.0 / sum(adulti), 1) FROM residenti_offline_attesi WHERE offline_attesi IS NOT NULL) AS quota_adulti_offline_pct,
    (SELECT round(sum(residenti_entro_800m) * 100.0 / sum(residenti), 1) FROM copertura_supporto_800m) AS quota_entro_800m_pct,
    (SELECT sum(hotspot) FROM hotspot_wifi_per_area) AS hotspot_wifi
