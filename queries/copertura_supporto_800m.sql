-- title: Residenti entro 800 m da una biblioteca o da un punto di facilitazione digitale
-- title_en: Residents within 800 m of a library or a digital facilitation point
-- period: 2021
-- source: Comune di Bologna: indici di fragilità 2021, biblioteche, risorse sociali (CC BY 4.0)
-- source_en: Comune di Bologna: 2021 fragility indices, libraries, social resources (CC BY 4.0)
-- description: Quota dei residenti di ciascuna area statistica che abita a non più di 800 metri (in
--   linea d'aria) da una biblioteca comunale o da un punto di facilitazione digitale.
-- description_en: Share of each statistical area's residents living within 800 metres (as the crow
--   flies) of a municipal library or a digital facilitation point.
-- unit: % dei residenti
-- unit_en: % of residents
-- columns: codice_area_statistica = Codice area; area_statistica = Area statistica;
--   residenti = Residenti [persone]; punti_griglia = Punti della griglia [punti];
--   punti_coperti = Punti entro 800 m [punti];
--   quota_entro_800m_pct = Residenti entro 800 m da un luogo di supporto [% dei residenti];
--   residenti_entro_800m = Residenti entro 800 m da un luogo di supporto [persone]
-- columns_en: codice_area_statistica = Area code; area_statistica = Statistical area;
--   residenti = Residents [persons]; punti_griglia = Grid points [points];
--   punti_coperti = Points within 800 m [points];
--   quota_entro_800m_pct = Residents within 800 m of a support place [% of residents];
--   residenti_entro_800m = Residents within 800 m of a support place [persons]
-- polarity: higher_is_better
-- sources: bologna.aree_statistiche, residenti_per_area, bologna.biblioteche, bologna.risorse_sociali
-- method: I dati aperti non localizzano i residenti dentro l'area: si assumono distribuiti in modo
--   uniforme sulla sua superficie. Ogni area è coperta da una griglia di punti ogni 100 m circa
--   (0,00126° di longitudine × 0,0009° di latitudine), tenendo i punti dentro il poligono (semplificato
--   a 0,0001°, circa 10 m, per velocità; le aree senza punti di griglia usano un loro punto interno).
--   Quota = punti di griglia entro 800 m (distanza sulla sfera, formula dell'emisenoverso, raggio
--   6.371.008,8 m) da almeno uno dei luoghi di supporto (mappa_biblioteche e
--   mappa_facilitazione_digitale) / punti di griglia dell'area. residenti_entro_800m = quota ×
--   residenti 2021.
-- method_en: The open data do not locate residents within the area: they are assumed to be spread
--   uniformly over its surface. Each area is covered by a grid of points about every 100 m
--   (0.00126° of longitude × 0.0009° of latitude), keeping the points inside the polygon
--   (simplified to 0.0001°, about 10 m, for speed; areas with no grid points use an interior point
--   of their own). Share = grid points within 800 m (distance on the sphere, haversine formula,
--   radius 6,371,008.8 m) of at least one of the support places (mappa_biblioteche and
--   mappa_facilitazione_digitale) / grid points of the area. residenti_entro_800m = share × 2021
--   residents.
-- method_version: 1.0
WITH bounds AS (
    SELECT
        codice_area_statistica,
        ST_Simplify(geometry, 0.0001) AS shape,
        ST_PointOnSurface(geometry) AS inner_point,
        ST_XMin(geometry) AS x0,
        ST_YMin(geometry) AS y0,
        CAST(ceil((ST_XMax(geometry) - ST_XMin(geometry)) / 0.00126) AS BIGINT) AS nx,
        CAST(ceil((ST_YMax(geometry) - ST_YMin(geometry)) / 0.0009) AS BIGINT) AS ny
    FROM bologna.aree_statistiche
),
cells AS (
    SELECT codice_area_statistica, shape, x0, y0, nx, unnest(range(nx * ny)) AS k FROM bounds
),
grid AS (
    SELECT codice_area_statistica, shape, x0 + (k % nx + 0.5) * 0.00126 AS lon, y0 + (k / nx + 0.5) * 0.0009 AS lat
    FROM cells
),
inside AS (
    SELECT codice_area_statistica, lon, lat FROM grid WHERE ST_Contains(shape, ST_Point(lon, lat))
),
sample_points AS (
    SELECT codice_area_statistica, lon, lat FROM inside
    UNION ALL
    SELECT b.codice_area_statistica, ST_XMin(b.inner_point) AS lon, ST_YMin(b.inner_point) AS lat
    FROM bounds AS b
    WHERE NOT EXISTS (SELECT 1 FROM inside AS i WHERE i.codice_area_statistica = b.codice_area_statistica)
),
support AS (
    SELECT ST_XMin(geometry) AS lon, ST_YMin(geometry) AS lat FROM mappa_biblioteche
    UNION ALL
    SELECT ST_XMin(geometry) AS lon, ST_YMin(geometry) AS lat FROM mappa_facilitazione_digitale
),
covered AS (
    SELECT
        p.codice_area_statistica,
        p.lon,
        p.lat,
        max(CASE WHEN 2 * 6371008.8 * asin(sqrt(
                power(sin(radians(s.lat - p.lat) / 2), 2)
                + cos(radians(p.lat)) * cos(radians(s.lat)) * power(sin(radians(s.lon - p.lon) / 2), 2)
            )) <= 800 THEN 1 ELSE 0 END) AS entro_800m
    FROM sample_points AS p
    CROSS JOIN support AS s
    GROUP BY p.codice_area_statistica, p.lon, p.lat
),
per_area AS (
    SELECT codice_area_statistica, count(*) AS punti_griglia, sum(entro_800m) AS punti_coperti
    FROM covered
    GROUP BY codice_area_statistica
)
SELECT
    a.codice_area_statistica,
    a.area_statistica,
    r.residenti,
    p.punti_griglia,
    p.punti_coperti,
    round(p.punti_coperti * 100.0 / p.punti_griglia, 2) AS quota_entro_800m_pct,
    CAST(round(r.residenti * p.punti_coperti * 1.0 / p.punti_griglia) AS BIGINT) AS residenti_entro_800m
FROM per_area AS p
JOIN bologna.aree_statistiche AS a ON a.codice_area_statistica = p.codice_area_statistica
JOIN residenti_per_area AS r ON r.codice_area_statistica = p.codice_area_statistica
