-- title: Biblioteche comunali
-- title_en: Municipal libraries
-- description: Le biblioteche del Comune di Bologna, con indirizzo e disponibilità di Wi-Fi.
-- description_en: The Comune di Bologna's libraries, with address and Wi-Fi availability.
-- unit: biblioteca
-- unit_en: library
-- polarity: neutral
-- sources: bologna.biblioteche
-- method: Punti dal campo Geo Point del file comunale.
-- method_en: Points from the Geo Point field of the Comune's file.
SELECT
    biblioteca AS nome,
    indirizzo,
    rete_wi_fi,
    geometry
FROM bologna.biblioteche
