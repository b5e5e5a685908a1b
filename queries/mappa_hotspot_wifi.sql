-- title: Hotspot Wi-Fi pubblici (BolognaWiFi)
-- title_en: Public Wi-Fi hotspots (BolognaWiFi)
-- description: I 303 access point della rete BolognaWiFi, con l'area statistica dichiarata.
-- description_en: The 303 access points of the BolognaWiFi network, with their declared statistical area.
-- unit: hotspot
-- unit_en: hotspot
-- polarity: neutral
-- sources: bologna.hotspot_wifi
-- method: Punti dalle coordinate x/y del file comunale.
-- method_en: Points from the x/y coordinates of the Comune's file.
SELECT
    hostname AS nome,
    area_statistica,
    attivo,
    geometry
FROM bologna.hotspot_wifi
