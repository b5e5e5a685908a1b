-- title: Domanda di supporto digitale per area statistica (per la pianificazione)
-- title_en: Demand for digital support per statistical area (for planning)
-- period: 2021
-- source: Comune di Bologna, aree statistiche e indici di fragilità (CC BY 4.0); ISTAT, Cittadini e ICT 2024
-- source_en: Comune di Bologna, statistical areas and fragility indices (CC BY 4.0); ISTAT, Citizens and ICT 2024
-- description: Le 90 aree statistiche con il loro poligono e tre misure della domanda di supporto
--   digitale (residenti, residenti di 80 anni e più, adulti offline attesi). È la domanda del
--   pianificatore dei punti di facilitazione (plans/punti_facilitazione.toml).
-- description_en: The 90 statistical areas with their polygon and three measures of the demand
--   for digital support (residents, residents aged 80 and over, expected offline adults). It is
--   the demand of the facilitation-point planner (plans/punti_facilitazione.toml).
-- unit: persone
-- unit_en: persons
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   residenti = Residenti [persone]; over_80 = Residenti con 80 anni e più [persone];
--   offline_attesi = Adulti offline attesi [persone]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   residenti = Residents [persons]; over_80 = Residents aged 80 and over [persons];
--   offline_attesi = Expected offline adults [persons]
-- polarity: higher_is_worse
-- sources: bologna.aree_statistiche, residenti_per_area, residenti_offline_attesi
-- method: residenti = popolazione residente 2021 (indici di fragilità); over_80 = residenti ×
--   quota di residenti con 80 anni e più / 100, senza arrotondare (vuoto nelle 11 aree escluse dagli
--   indici, che il pianificatore conta come 0); offline_attesi come in residenti_offline_attesi
--   (vuoto nelle stesse aree). Il pianificatore usa il centroide (planare) del poligono dell'area.
-- method_en: residenti = 2021 resident population (fragility indices); over_80 = residents ×
--   share aged 80 and over / 100, not rounded (empty in the 11 areas excluded from the indices,
--   which the planner counts as 0); offline_attesi as in residenti_offline_attesi (empty in the
--   same areas). The planner uses the (planar) centroid of the area's polygon.
-- method_version: 1.0
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    r.residenti,
    r.residenti * r.quota_over_80_pct / 100.0 AS over_80,
    o.offline_attesi,
    a.geometry
FROM bologna.aree_statistiche AS a
LEFT JOIN residenti_per_area AS r ON r.codice_area_statistica = a.codice_area_statistica
LEFT JOIN residenti_offline_attesi AS o ON o.codice_area_statistica = a.codice_area_statistica
