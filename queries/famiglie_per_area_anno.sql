-- title: Famiglie residenti per area statistica e anno
-- title_en: Resident households per statistical area and year
-- period_column: anno
-- source: Comune di Bologna, famiglie residenti (CC BY 4.0)
-- source_en: Comune di Bologna, resident households (CC BY 4.0)
-- description: Numero di famiglie residenti in ciascuna area statistica dal 2016, e quante sono
--   composte da una sola persona.
-- description_en: Number of resident households in each statistical area since 2016, and how many
--   are one-person households.
-- unit: famiglie
-- unit_en: households
-- columns: codice_area_statistica = Codice area; anno = Anno; famiglie = Famiglie [famiglie];
--   famiglie_una_persona = Famiglie di una persona [famiglie]
-- columns_en: codice_area_statistica = Area code; anno = Year; famiglie = Households [households];
--   famiglie_una_persona = One-person households [households]
-- polarity: neutral
-- sources: bologna.famiglie
-- method: Somma per area e anno delle famiglie di ogni ampiezza; famiglie_una_persona = ampiezza 1.
-- method_en: Sum per area and year of the households of every size; famiglie_una_persona = size 1.
-- persons: famiglie, famiglie_una_persona
-- persons_derived: famiglie_una_persona <- famiglie
-- persons_key: codice_area_statistica, anno
SELECT
    codice_area_statistica,
    anno,
    sum(numero_famiglie) AS famiglie,
    sum(CASE WHEN dimensione_familiare = '1' THEN numero_famiglie ELSE 0 END) AS famiglie_una_persona
FROM bologna.famiglie
GROUP BY codice_area_statistica, anno
