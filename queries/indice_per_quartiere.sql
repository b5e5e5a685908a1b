-- title: Indice del divario digitale per quartiere
-- title_en: Digital-divide index per quartiere
-- period: 2021–2024
-- source: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: vedi il metodo
-- source_en: Comune di Bologna (CC BY 4.0), ANPR (CC0), ISTAT: see the method
-- description: Media dell'indice composito del divario digitale nelle aree di ciascun quartiere,
--   pesata sui residenti.
-- description_en: Mean of the composite digital-divide index over each quartiere's areas, weighted
--   by residents.
-- unit: punteggio 0–100 (più alto = più divario)
-- unit_en: score 0–100 (higher = more divide)
-- columns: quartiere = Quartiere;
--   indice = Indice composito, media pesata per residenti [punteggio 0–100];
--   residenti = Residenti [persone]
-- columns_en: quartiere = Quartiere (district);
--   indice = Composite index, mean weighted by residents [score 0–100];
--   residenti = Residents [persons]
-- polarity: higher_is_worse
-- sources: indice_divario_digitale, aree_statistiche_mappa, residenti_per_area
-- method: Σ(indice × residenti) / Σ residenti sulle aree del quartiere con l'indice calcolato.
-- method_en: Σ(indice × residenti) / Σ residenti over the areas of the quartiere for which the
--   index is computed.
SELECT
    m.quartiere,
    round(sum(i.indice * r.residenti) / sum(r.residenti), 2) AS indice,
    sum(r.residenti) AS residenti
FROM indice_divario_digitale AS i
JOIN aree_statistiche_mappa AS m ON m.codice_area_statistica = i.codice_area_statistica
JOIN residenti_per_area AS r ON r.codice_area_statistica = i.codice_area_statistica
WHERE i.indice IS NOT NULL
GROUP BY m.quartiere
