-- title: Connessioni giornaliere alla rete BolognaWiFi
-- title_en: Daily connections to the BolognaWiFi network
-- description: Numero di connessioni al giorno alla rete Wi-Fi pubblica del Comune.
-- description_en: Connections per day to the Comune's public Wi-Fi network.
-- unit: connessioni al giorno
-- unit_en: connections per day
-- polarity: higher_is_better
-- sources: bologna.connessioni_wifi
-- method: Valori giornalieri pubblicati dal Comune, senza trasformazioni.
SELECT data, connessioni FROM bologna.connessioni_wifi
