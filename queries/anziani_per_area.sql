-- title: Anziani per area statistica: over 65, over 80 e over 65 che vivono soli
-- title_en: Older residents per statistical area: 65+, 80+ and over-65s living alone
-- period: 2021
-- source: Comune di Bologna, indici di fragilità (CC BY 4.0)
-- source_en: Comune di Bologna, fragility indices (CC BY 4.0)
-- description: Quota di residenti con 80 anni e più e di over 65 che vivono soli (dati reali 2021),
--   e quota stimata di over 65, per ciascuna area statistica.
-- description_en: Share of residents aged 80 and over and of over-65s living alone (real 2021 data),
--   and the estimated share aged 65 and over, per statistical area.
-- unit: % dei residenti
-- unit_en: % of residents
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   residenti = Residenti [persone];
--   quota_over_80_pct = Residenti con 80 anni e più [% dei residenti];
--   quota_over_65_stimata_pct = Residenti con 65 anni e più, stima [% dei residenti];
--   over_65_soli_pct = Over 65 che vivono soli [% degli over 65];
--   over_80 = Residenti con 80 anni e più, stima [persone];
--   over_65_stimati = Residenti con 65 anni e più, stima [persone];
--   over_65_soli_stimati = Over 65 che vivono soli, stima [persone]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   residenti = Residents [persons];
--   quota_over_80_pct = Residents aged 80 and over [% of residents];
--   quota_over_65_stimata_pct = Residents aged 65 and over, estimate [% of residents];
--   over_65_soli_pct = Over-65s living alone [% of over-65s];
--   over_80 = Residents aged 80 and over, estimate [persons];
--   over_65_stimati = Residents aged 65 and over, estimate [persons];
--   over_65_soli_stimati = Over-65s living alone, estimate [persons]
-- polarity: higher_is_worse
-- sources: residenti_per_area, bologna.fragilita
-- method: quota_over_80_pct e over_65_soli_pct vengono dagli indici di fragilità 2021 (vuoti nelle 11
--   aree escluse, con poche decine di residenti). I dati aperti non danno gli over 65 per area: la quota
--   over 65 è stimata come quota over 80 × (1 + 1,8), dove 1,8 è il rapporto tra residenti di 65–79
--   anni e di 80 anni e più nel comune (ordine di grandezza ISTAT, popolazione per età al 1° gennaio
--   2022); è quindi proporzionale alla quota over 80 e va sostituita dal dato d'anagrafe per area quando
--   il connettore dell'anagrafe (registry.residenti_per_area) è configurato. over_65_soli_stimati = over 65 stimati × over_65_soli_pct / 100.
-- method_en: quota_over_80_pct and over_65_soli_pct come from the 2021 fragility indices (empty in
--   the 11 excluded areas, which have a few dozen residents). The open data do not give the
--   over-65s per area: the over-65 share is estimated as the over-80 share × (1 + 1.8), where 1.8
--   is the ratio of residents aged 65–79 to residents aged 80 and over in the comune (ISTAT order
--   of magnitude, population by age on 1 January 2022); it is therefore proportional to the over-80
--   share and is to be replaced by the registry figure per area when the registry connector
--   (registry.residenti_per_area) is configured. over_65_soli_stimati = estimated over-65s ×
--   over_65_soli_pct / 100.
-- method_version: 1.0
-- persons: residenti, over_80, over_65_stimati, over_65_soli_stimati
-- persons_derived: quota_over_80_pct, quota_over_65_stimata_pct, over_65_stimati, over_65_soli_stimati <- over_80;
--   quota_over_80_pct, quota_over_65_stimata_pct, over_80, over_65_soli_stimati <- over_65_stimati;
--   over_65_soli_pct <- over_65_soli_stimati
-- persons_key: codice_area_statistica
SELECT
    r.codice_area_statistica,
    r.area_statistica,
    r.residenti,
    r.quota_over_80_pct,
    round(r.quota_over_80_pct * 2.8, 1) AS quota_over_65_stimata_pct,
    f.pct_residenti_oltre_65_anni_che_vive_sola AS over_65_soli_pct,
    r.over_80_stimati AS over_80,
    CAST(round(r.residenti * r.quota_over_80_pct * 2.8 / 100.0) AS BIGINT) AS over_65_stimati,
    CAST(round(r.residenti * r.quota_over_80_pct * 2.8 / 100.0
               * f.pct_residenti_oltre_65_anni_che_vive_sola / 100.0) AS BIGINT) AS over_65_soli_stimati
FROM residenti_per_area AS r
JOIN bologna.fragilita AS f ON f.codice_area_statistica = r.codice_area_statistica
