-- title: Punti di facilitazione digitale
-- title_en: Digital facilitation points
-- description: Sportelli di aiuto con SPID, servizi online, smartphone e computer, dalla mappa delle
--   risorse sociali del Comune.
-- description_en: Help desks for SPID, online services, smartphones and computers, from the
--   Comune's map of social resources.
-- unit: punto
-- unit_en: point
-- polarity: neutral
-- sources: bologna.risorse_sociali
-- method: Risorse con attività "Supporto informatico e burocratico" il cui nome parla di informatica,
--   digitale, SPID, smartphone, computer, internet o facilitazione (32 su 46: si escludono gli sportelli
--   solo burocratici, come i contributi per le vittime di truffe). Il nome è la prima riga del campo NOME.
-- method_en: Resources with activity "Supporto informatico e burocratico" (IT and administrative
--   support) whose name mentions computing, digital, SPID, smartphones, computers, the internet or
--   facilitation (32 of 46: desks that are purely administrative, such as the one for payments to
--   victims of scams, are excluded). The name is the first line of the NOME field.
SELECT
    split_part(nome, chr(10), 1) AS nome,
    ente_promuovente,
    strada,
    civico,
    geometry
FROM bologna.risorse_sociali
WHERE attivita = 'Supporto informatico e burocratico'
  AND regexp_like(lower(nome), 'informatic|digital|spid|smartphone|computer|internet|facilitaz|\bpc\b')
