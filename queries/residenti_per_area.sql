-- title: Residenti per area statistica e quota di over 80
-- title_en: Residents per statistical area and share aged 80 and over
-- description: Popolazione residente nel 2021 in ciascuna delle 90 aree statistiche di Bologna,
--   con la quota di residenti oltre gli 80 anni e il numero stimato di over 80.
-- description_en: 2021 resident population of each of Bologna's 90 statistical areas, with the
--   share aged over 80 and the estimated number of over-80s.
-- unit: persone
-- unit_en: persons
-- polarity: neutral
-- sources: bologna.aree_statistiche, bologna.fragilita
-- method: residenti = popolazione residente 2021 (indici di fragilità); over_80_stimati = residenti × quota / 100, arrotondato.
-- method_en: residenti = 2021 resident population (fragility indices); over_80_stimati = residenti
--   × share / 100, rounded.
-- persons: residenti, over_80_stimati
-- persons_derived: over_80_stimati, quota_over_80_pct <- residenti; quota_over_80_pct <- over_80_stimati
-- persons_groups: zona
-- persons_key: codice_area_statistica
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    a.zona,
    a.quartiere,
    f.popolazione_residente AS residenti,
    f.perc_residenti_oltre_80_anni AS quota_over_80_pct,
    CAST(round(f.popolazione_residente * f.perc_residenti_oltre_80_anni / 100.0) AS BIGINT) AS over_80_stimati
FROM bologna.aree_statistiche AS a
JOIN bologna.fragilita AS f ON f.codice_area_statistica = a.codice_area_statistica
ORDER BY a.codice_area_statistica
