-- title: Indici di fragilità per area statistica (2021)
-- title_en: Fragility indices per statistical area (2021)
-- period: 2021
-- source: Comune di Bologna, indici di fragilità (CC BY 4.0)
-- source_en: Comune di Bologna, fragility indices (CC BY 4.0)
-- description: Gli indici di fragilità potenziale demografica, sociale, economica e complessiva
--   calcolati dal Comune di Bologna (100 = media cittadina).
-- description_en: The demographic, social, economic and overall potential-fragility indices computed
--   by the Comune di Bologna (100 = city average).
-- unit: indice (100 = media di Bologna)
-- unit_en: index (100 = Bologna average)
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   fragilita_demografica = Fragilità demografica [indice, 100 = media di Bologna];
--   fragilita_sociale = Fragilità sociale [indice, 100 = media di Bologna];
--   fragilita_economica = Fragilità economica [indice, 100 = media di Bologna];
--   fragilita_complessiva = Fragilità complessiva [indice, 100 = media di Bologna];
--   gruppo_fragilita = Gruppo di fragilità
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   fragilita_demografica = Demographic fragility [index, 100 = Bologna average];
--   fragilita_sociale = Social fragility [index, 100 = Bologna average];
--   fragilita_economica = Economic fragility [index, 100 = Bologna average];
--   fragilita_complessiva = Overall fragility [index, 100 = Bologna average];
--   gruppo_fragilita = Fragility group
-- polarity: higher_is_worse
-- sources: bologna.fragilita, bologna.aree_statistiche
-- method: Valori pubblicati dal Comune (indici di fragilità 2021), senza ricalcolo; vuoti nelle 11 aree
--   escluse dal calcolo comunale perché poco popolate.
-- method_en: Values published by the Comune (2021 fragility indices), not recomputed; empty in the
--   11 areas excluded from the Comune's calculation because they are sparsely populated.
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    f.indice_potenziale_fragilita_demografica AS fragilita_demografica,
    f.indice_potenziale_fragilita_sociale AS fragilita_sociale,
    f.indice_potenziale_fragilita_economica AS fragilita_economica,
    f.indice_complessivo_fragilita AS fragilita_complessiva,
    f.gruppo AS gruppo_fragilita
FROM bologna.aree_statistiche AS a
JOIN bologna.fragilita AS f ON f.codice_area_statistica = a.codice_area_statistica
