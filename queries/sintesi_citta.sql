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
-- columns: residenti = Residenti [persone]; adulti_offline_attesi = Adulti offline attesi [persone];
--   quota_adulti_offline_pct = Adulti offline attesi [% degli adulti];
--   quota_entro_800m_pct = Residenti entro 800 m da un luogo di supporto [% dei residenti];
--   hotspot_wifi = Hotspot Wi-Fi pubblici [hotspot];
--   hotspot_per_1000_residenti = Hotspot Wi-Fi pubblici [ogni 1.000 residenti];
--   quota_over_80_pct = Residenti con 80 anni e più [% dei residenti];
--   quota_over_65_stimata_pct = Residenti con 65 anni e più, stima [% dei residenti];
--   over_65_soli_pct = Over 65 che vivono soli [% degli over 65];
--   indice = Indice composito, media pesata per residenti [punteggio 0–100];
--   bisogno = Pilastro bisogno, media pesata per residenti [punteggio 0–100];
--   connettivita = Pilastro connettività, media pesata per residenti [punteggio 0–100];
--   supporto = Pilastro supporto, media pesata per residenti [punteggio 0–100]
-- columns_en: residenti = Residents [persons]; adulti_offline_attesi = Expected offline adults [persons];
--   quota_adulti_offline_pct = Expected offline adults [% of adults];
--   quota_entro_800m_pct = Residents within 800 m of a support place [% of residents];
--   hotspot_wifi = Public Wi-Fi hotspots [hotspots];
--   hotspot_per_1000_residenti = Public Wi-Fi hotspots [per 1,000 residents];
--   quota_over_80_pct = Residents aged 80 and over [% of residents];
--   quota_over_65_stimata_pct = Residents aged 65 and over, estimate [% of residents];
--   over_65_soli_pct = Over-65s living alone [% of over-65s];
--   indice = Composite index, mean weighted by residents [score 0–100];
--   bisogno = Need pillar, mean weighted by residents [score 0–100];
--   connettivita = Connectivity pillar, mean weighted by residents [score 0–100];
--   supporto = Support pillar, mean weighted by residents [score 0–100]
-- sources: residenti_offline_attesi, copertura_supporto_800m, hotspot_wifi_per_area, anziani_per_area,
--   residenti_per_area, indice_divario_digitale, indice_divario_pilastri
-- method: Somme sulle 90 aree; le quote sono rapporti tra somme (adulti offline attesi / adulti delle
--   79 aree con dato; residenti entro 800 m / residenti). Nei dati pubblici le somme sono fatte sui
--   valori pubblicati: le celle soppresse per riservatezza restano fuori, così come dalle quote.
--   Over 80 e over 65: rapporti tra le somme delle stime per area (over 65 soli / over 65). L'indice
--   e i pilastri sono medie delle aree pesate per i residenti, sulle aree con valore.
-- method_en: Sums over the 90 areas; shares are ratios of sums (expected offline adults / adults of
--   the 79 areas with data; residents within 800 m / residents). In the public data the sums are over
--   the published values: cells suppressed for confidentiality are left out, of the shares too.
--   Over-80s and over-65s: ratios of the sums of the per-area estimates (over-65s alone / over-65s).
--   Index and pillars: mean of the areas weighted by residents, over the areas with a value.
SELECT
    (SELECT sum(residenti) FROM residenti_offline_attesi) AS residenti,
    (SELECT sum(offline_attesi) FROM residenti_offline_attesi) AS adulti_offline_attesi,
    (SELECT round(sum(offline_attesi) * 100.0 / sum(adulti), 1) FROM residenti_offline_attesi WHERE offline_attesi IS NOT NULL) AS quota_adulti_offline_pct,
    (SELECT round(sum(residenti_entro_800m) * 100.0 / sum(residenti), 1) FROM copertura_supporto_800m) AS quota_entro_800m_pct,
    (SELECT sum(hotspot) FROM hotspot_wifi_per_area) AS hotspot_wifi,
    (SELECT round(sum(hotspot) * 1000.0 / sum(residenti), 4) FROM hotspot_wifi_per_area) AS hotspot_per_1000_residenti,
    (SELECT round(sum(over_80) * 100.0 / sum(residenti), 1) FROM anziani_per_area WHERE over_80 IS NOT NULL) AS quota_over_80_pct,
    (SELECT round(sum(over_65_stimati) * 100.0 / sum(residenti), 1) FROM anziani_per_area WHERE over_65_stimati IS NOT NULL) AS quota_over_65_stimata_pct,
    (SELECT round(sum(over_65_soli_stimati) * 100.0 / sum(over_65_stimati), 1) FROM anziani_per_area WHERE over_65_soli_stimati IS NOT NULL) AS over_65_soli_pct,
    (SELECT round(sum(i.indice * r.residenti) / sum(r.residenti), 2) FROM indice_divario_digitale AS i
        JOIN residenti_per_area AS r ON r.codice_area_statistica = i.codice_area_statistica WHERE i.indice IS NOT NULL) AS indice,
    (SELECT round(sum(p.bisogno * r.residenti) / sum(r.residenti), 2) FROM indice_divario_pilastri AS p
        JOIN residenti_per_area AS r ON r.codice_area_statistica = p.codice_area_statistica WHERE p.bisogno IS NOT NULL) AS bisogno,
    (SELECT round(sum(p.connettivita * r.residenti) / sum(r.residenti), 2) FROM indice_divario_pilastri AS p
        JOIN residenti_per_area AS r ON r.codice_area_statistica = p.codice_area_statistica WHERE p.connettivita IS NOT NULL) AS connettivita,
    (SELECT round(sum(p.supporto * r.residenti) / sum(r.residenti), 2) FROM indice_divario_pilastri AS p
        JOIN residenti_per_area AS r ON r.codice_area_statistica = p.codice_area_statistica WHERE p.supporto IS NOT NULL) AS supporto
