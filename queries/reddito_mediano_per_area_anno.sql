-- title: Reddito imponibile mediano per area statistica e anno
-- title_en: Median taxable income per statistical area and year
-- period_column: anno
-- source: Comune di Bologna, reddito imponibile mediano (CC BY 4.0)
-- source_en: Comune di Bologna, median taxable income (CC BY 4.0)
-- description: Reddito imponibile mediano dei contribuenti residenti in ciascuna area statistica,
--   2016–2021.
-- description_en: Median taxable income of the resident taxpayers of each statistical area, 2016–2021.
-- unit: euro
-- unit_en: euro
-- columns: codice_area_statistica = Codice area; anno = Anno;
--   reddito_mediano = Reddito imponibile mediano [euro]; contribuenti = Contribuenti [persone]
-- columns_en: codice_area_statistica = Area code; anno = Year;
--   reddito_mediano = Median taxable income [euro]; contribuenti = Taxpayers [persons]
-- polarity: higher_is_better
-- sources: bologna.reddito_mediano, bologna.aree_statistiche
-- method: Il file del reddito nomina l'area senza codice: join sul nome in maiuscolo; le righe il cui
--   nome non corrisponde a un'area (i senza fissa dimora, un nome abbreviato) restano fuori.
-- method_en: The income file names the area without a code: join on the name in upper case; rows
--   whose name does not match an area (people of no fixed abode, an abbreviated name) are left out.
SELECT
    a.codice_area_statistica,
    r.anno,
    r.reddito_mediano,
    r.contribuenti
FROM bologna.reddito_mediano AS r
JOIN bologna.aree_statistiche AS a ON upper(a.area_statistica) = upper(r.area_statistica)
