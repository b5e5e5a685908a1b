-- title: Comuni della Città metropolitana di Bologna (confini)
-- title_en: Comuni of the metropolitan city of Bologna (boundaries)
-- description: I 55 comuni della Città metropolitana con il codice ISTAT: lo strato di base della
--   vista metropolitana.
-- description_en: The 55 comuni of the metropolitan city with their ISTAT code: the base layer of the
--   metropolitan view.
-- unit: comune
-- unit_en: comune
-- polarity: neutral
-- sources: bologna.comuni_metropolitani
-- method: Confini ISTAT (giugno 2023) via openpolis, senza trasformazioni.
-- method_en: ISTAT boundaries (June 2023) via openpolis, without transformations.
SELECT
    com_istat_code AS cod_istat_comune,
    name AS comune,
    geometry
FROM bologna.comuni_metropolitani
