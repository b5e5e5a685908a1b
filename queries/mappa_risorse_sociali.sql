-- title: Risorse sociali
-- title_en: Social resources
-- description: Associazioni, servizi e luoghi di incontro della mappa delle risorse sociali del Comune.
-- description_en: Associations, services and meeting places from the Comune's map of social resources.
-- unit: risorsa
-- unit_en: resource
-- polarity: neutral
-- sources: bologna.risorse_sociali
-- method: Punti dal campo Geo Point; il nome è la prima riga del campo NOME.
-- method_en: Points from the Geo Point field; the name is the first line of the NOME field.
SELECT
    split_part(nome, chr(10), 1) AS nome,
    attivita,
    quartiere,
    geometry
FROM bologna.risorse_sociali
