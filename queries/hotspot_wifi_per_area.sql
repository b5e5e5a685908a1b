-- title: Hotspot Wi-Fi pubblici ogni 1.000 residenti per area statistica
-- title_en: Public Wi-Fi hotspots per 1,000 residents per statistical area
-- period: 2021–2024
-- source: Comune di Bologna, hotspot BolognaWiFi (2024) e popolazione (2021) (CC BY 4.0)
-- source_en: Comune di Bologna, BolognaWiFi hotspots (2024) and population (2021) (CC BY 4.0)
-- description: Gli access point BolognaWiFi attribuiti alle aree statistiche con un join spaziale
--   (il punto dell'hotspot contenuto nel poligono dell'area), rapportati ai residenti 2021.
-- description_en: BolognaWiFi access points assigned to statistical areas by a spatial join
--   (the hotspot's point inside the area's polygon), per 1,000 residents in 2021.
-- unit: hotspot ogni 1.000 residenti
-- unit_en: hotspots per 1,000 residents
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   hotspot = Hotspot Wi-Fi pubblici [hotspot]; residenti = Residenti [persone];
--   hotspot_per_1000_residenti = Hotspot Wi-Fi pubblici [ogni 1.000 residenti]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   hotspot = Public Wi-Fi hotspots [hotspots]; residenti = Residents [persons];
--   hotspot_per_1000_residenti = Public Wi-Fi hotspots [per 1,000 residents]
-- polarity: higher_is_better
-- sources: bologna.aree_statistiche, bologna.hotspot_wifi, residenti_per_area
-- method: ST_Contains(area.geometry, hotspot.geometry); aree senza hotspot contano 0.
-- method_en: ST_Contains(area.geometry, hotspot.geometry); areas without hotspots count as 0.
WITH hotspot_per_area AS (
    SELECT a.codice_area_statistica, count(h.hostname) AS hotspot
    FROM bologna.aree_statistiche AS a
    LEFT JOIN bologna.hotspot_wifi AS h ON ST_Contains(a.geometry, h.geometry)
    GROUP BY a.codice_area_statistica
)
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    h.hotspot,
    r.residenti,
    round(h.hotspot * 1000.0 / r.residenti, 4) AS hotspot_per_1000_residenti
FROM hotspot_per_area AS h
JOIN bologna.aree_statistiche AS a ON a.codice_area_statistica = h.codice_area_statistica
JOIN residenti_per_area AS r ON r.codice_area_statistica = h.codice_area_statistica
ORDER BY a.codice_area_statistica
