-- title: Aree statistiche di Bologna (confini)
-- title_en: Bologna's statistical areas (boundaries)
-- description: I 90 poligoni delle aree statistiche con zona e quartiere: lo strato di base delle
--   mappe dei quartieri.
-- description_en: The 90 statistical-area polygons with their zone and quartiere: the base layer of
--   the city maps.
-- unit: area
-- unit_en: area
-- polarity: neutral
-- sources: bologna.aree_statistiche, residenti_per_area
-- method: Confini ufficiali del Comune di Bologna (WGS84), senza trasformazioni.
-- method_en: Official boundaries from the Comune di Bologna (WGS84), without transformations.
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    a.zona,
    a.quartiere,
    r.residenti,
    a.geometry
FROM bologna.aree_statistiche AS a
LEFT JOIN residenti_per_area AS r ON r.codice_area_statistica = a.codice_area_statistica
