-- title: Residenti adulti offline attesi per area statistica
-- title_en: Expected offline adult residents per statistical area
-- period: 2021
-- source: Comune di Bologna, indici di fragilità e popolazione (CC BY 4.0); ISTAT, Cittadini e ICT 2024
-- source_en: Comune di Bologna, fragility indices and population (CC BY 4.0); ISTAT, Citizens and ICT 2024
-- description: Quanti adulti ci si aspetta che non usino Internet, applicando alla popolazione di
--   ciascuna area, per fascia d'età, la quota ISTAT di chi non ha usato Internet negli ultimi 3 mesi.
-- description_en: How many adults are expected not to use the Internet, applying to each area's
--   population, by age band, ISTAT's share of people who did not use the Internet in the last 3 months.
-- unit: % dei residenti adulti
-- unit_en: % of adult residents
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   residenti = Residenti [persone]; adulti = Adulti (18 anni e più) [persone];
--   adulti_18_64 = Adulti di 18–64 anni [persone]; adulti_65_79 = Adulti di 65–79 anni [persone];
--   adulti_80_piu = Adulti di 80 anni e più [persone];
--   offline_attesi = Adulti offline attesi [persone];
--   quota_offline_attesi_pct = Adulti offline attesi [% degli adulti]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   residenti = Residents [persons]; adulti = Adults (18 and over) [persons];
--   adulti_18_64 = Adults aged 18–64 [persons]; adulti_65_79 = Adults aged 65–79 [persons];
--   adulti_80_piu = Adults aged 80 and over [persons];
--   offline_attesi = Expected offline adults [persons];
--   quota_offline_attesi_pct = Expected offline adults [% of adults]
-- polarity: higher_is_worse
-- sources: residenti_per_area, bologna.aree_statistiche, bologna.zone, bologna.popolazione
-- method: Tassi di uso di Internet negli ultimi 3 mesi (ISTAT, "Cittadini e ICT" 2024: oltre 93% da
--   11 a 54 anni, 68,1% a 65–74, 31,4% da 75 anni in su; 55–64 interpolati a 88% e 81%), portati sulle
--   fasce disponibili: 18–64 anni 91%; 65–79 anni 56% (2/3 × 68,1% + 1/3 × 31,4%, il peso dei 65–74
--   sui 65–79); 80 anni e più 31,4% (il dato ISTAT dei 75+, che per gli 80+ sovrastima l'uso). Fasce per area, stimate: adulti = residenti 2021 × (1 − quota 0–17 anni della zona nel 2021,
--   dalla serie della popolazione per zona; l'area è assegnata alla zona che contiene un suo punto
--   interno); 80+ = residenti × quota over 80 (indici di fragilità); 65–79 = 80+ × 1,8 (rapporto
--   cittadino, vedi anziani_per_area); 18–64 = adulti − 65–79 − 80+. offline = Σ fascia × (1 − tasso).
--   Vuoto nelle 11 aree escluse, che non hanno la quota over 80.
-- method_en: Rates of Internet use in the last 3 months (ISTAT, "Citizens and ICT" 2024: over 93%
--   from 11 to 54 years, 68.1% at 65–74, 31.4% from 75 up; 55–64 interpolated at 88% and 81%),
--   carried over to the available bands: 18–64 years 91%; 65–79 years 56% (2/3 × 68.1% + 1/3 ×
--   31.4%, the weight of the 65–74s within the 65–79s); 80 and over 31.4% (ISTAT's figure for 75+,
--   which overstates use for the 80+). Bands per area, estimated: adults = 2021 residents × (1 −
--   the zone's share aged 0–17 in 2021, from the population series per zone; the area is assigned
--   to the zone that contains one of its interior points); 80+ = residents × over-80 share
--   (fragility indices); 65–79 = 80+ × 1.8 (city-wide ratio, see anziani_per_area); 18–64 = adults
--   − 65–79 − 80+. offline = Σ band × (1 − rate). Empty in the 11 excluded areas, which have no
--   over-80 share.
-- method_version: 1.0
-- persons: residenti, adulti_80_piu
-- persons_derived: adulti, adulti_18_64, adulti_65_79, adulti_80_piu, offline_attesi, quota_offline_attesi_pct <- residenti;
--   adulti_18_64, adulti_65_79, offline_attesi, quota_offline_attesi_pct <- adulti_80_piu
-- persons_key: codice_area_statistica
WITH area_zone AS (
    SELECT a.codice_area_statistica, z.nome_zona
    FROM bologna.aree_statistiche AS a
    JOIN bologna.zone AS z ON ST_Contains(z.geometry, ST_PointOnSurface(a.geometry))
),
minors_share AS (
    SELECT
        zona,
        sum(CASE WHEN eta = '00_17' THEN residenti ELSE 0 END) * 1.0 / sum(residenti) AS quota_0_17
    FROM bologna.popolazione
    WHERE anno = 2021
    GROUP BY zona
),
bands AS (
    SELECT
        r.codice_area_statistica,
        r.area_statistica,
        r.residenti,
        r.residenti * (1 - m.quota_0_17) AS adulti,
        r.residenti * r.quota_over_80_pct / 100.0 AS eta_80_piu,
        r.residenti * r.quota_over_80_pct / 100.0 * 1.8 AS eta_65_79
    FROM residenti_per_area AS r
    JOIN area_zone AS az ON az.codice_area_statistica = r.codice_area_statistica
    JOIN minors_share AS m ON m.zona = az.nome_zona
),
offline AS (
    SELECT
        *,
        adulti - eta_65_79 - eta_80_piu AS eta_18_64,
        (adulti - eta_65_79 - eta_80_piu) * (1 - 0.91) + eta_65_79 * (1 - 0.56) + eta_80_piu * (1 - 0.314) AS offline_attesi
    FROM bands
)
SELECT
    codice_area_statistica,
    area_statistica,
    residenti,
    CAST(round(adulti) AS BIGINT) AS adulti,
    CAST(round(eta_18_64) AS BIGINT) AS adulti_18_64,
    CAST(round(eta_65_79) AS BIGINT) AS adulti_65_79,
    CAST(round(eta_80_piu) AS BIGINT) AS adulti_80_piu,
    CAST(round(offline_attesi) AS BIGINT) AS offline_attesi,
    round(offline_attesi * 100.0 / adulti, 2) AS quota_offline_attesi_pct
FROM offline
