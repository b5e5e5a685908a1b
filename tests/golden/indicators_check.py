#!/usr/bin/env python3
"""Independent golden values for the dashboard's indicators, computed straight from data/.

Written from the indicators' `method` metadata, not from their SQL: Python's csv module and
shapely, every value read as text and converted explicitly. Needs: pip install shapely

Run from anywhere:  python3 tests/golden/indicators_check.py
It rewrites tests/golden/indicators_per_area.csv and tests/golden/anpr_services_per_1000.csv and
prints the totals quoted in tests/golden/indicators.md.
"""
import csv
import io
import json
import math
import os
import re

from shapely.geometry import Point, shape

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "data")
BO = os.path.join(DATA, "bologna")
IT = os.path.join(DATA, "italia")

# Parameters stated in the indicators' method metadata.
INTERNET_USE = {"18_64": 0.91, "65_79": 0.56, "80_plus": 0.314}
RATIO_65_79_TO_80_PLUS = 1.8
GRID_DX, GRID_DY = 0.00126, 0.0009
SIMPLIFY = 0.0001
EARTH_RADIUS_M = 6371008.8
SUPPORT_RADIUS_M = 800.0
BOLOGNA_ISTAT = "037006"
FACILITATION_WORDS = ("informatic", "digital", "spid", "smartphone", "computer", "internet", "facilitaz")


def read_text(path):
    with open(path, "rb") as fh:
        return fh.read().decode("utf-8").lstrip("\ufeff")


def rows(path, delimiter):
    return list(csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delimiter))


def features(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)["features"]


def clamp01(x):
    return min(max(x, 0.0), 1.0)


def haversine(lon1, lat1, lon2, lat2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    a = math.sin(math.radians(lat2 - lat1) / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(math.radians(lon2 - lon1) / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(math.sqrt(a))


def number(text):
    text = text.strip()
    return float(text) if text else None


# Areas and zones.
areas = {}
for ft in features(os.path.join(BO, "bologna_aree_statistiche.geojson")):
    areas[int(ft["properties"]["codice_area_statistica"])] = shape(ft["geometry"])
zones = [(ft["properties"]["Nome_zona"], shape(ft["geometry"])) for ft in features(os.path.join(BO, "bologna_zone.geojson"))]

# Fragility 2021.
fragility = {}
for r in rows(os.path.join(BO, "indici-di-fragilita-dal-2021.csv"), ";"):
    if r["Anno"].strip() != "2021":
        continue
    fragility[int(r["Cod Area Statistica"])] = {
        "population": int(r["Popolazione residente"]),
        "over_80_pct": number(r["Perc residenti oltre 80 anni"]),
        "alone_pct": number(r["% residenti oltre 65 anni che vive sola"]),
        "fragility": number(r["Indice complessivo fragilità"]),
    }

# Share aged 0-17 per zone in 2021, from the population series.
minors, everyone = {}, {}
for r in rows(os.path.join(BO, "popolazione-per-quartiere-zona-sesso-eta-cittadinanza-provincia-di-nascita-serie.csv"), ";"):
    zone = r["Zona"]
    n = int(r["2021"])
    everyone[zone] = everyone.get(zone, 0) + n
    if r["Età"] == "00_17":
        minors[zone] = minors.get(zone, 0) + n

# Hotspots per area.
hotspots = {code: 0 for code in areas}
for r in rows(os.path.join(BO, "bolognawifi-elenco-hot-spot.csv"), ","):
    point = Point(float(r["x"]), float(r["y"]))
    for code, polygon in areas.items():
        if polygon.contains(point):
            hotspots[code] += 1

# Connectivity probes per area (the sensor registry: kind connectivity_probe, lon/lat). Their
# readings are simulated at run time, so the test reads the measured speeds from the server and
# checks here only which areas have a probe.
probes = {code: 0 for code in areas}
for r in rows(os.path.join(BO, "sensori.csv"), ","):
    if r["kind"] != "connectivity_probe":
        continue
    point = Point(float(r["lon"]), float(r["lat"]))
    for code, polygon in areas.items():
        if polygon.contains(point):
            probes[code] += 1

# Support places: libraries and digital facilitation points ("lat, lon" in Geo Point).
support = []
for r in rows(os.path.join(BO, "biblioteche-comunali-di-bologna.csv"), ";"):
    lat, lon = (float(v) for v in r["Geo Point"].split(","))
    support.append((lon, lat))
for r in rows(os.path.join(BO, "mappa-delle-risorse-sociali.csv"), ";"):
    name = r["NOME"].lower()
    if r["ATTIVITA'"] == "Supporto informatico e burocratico" and (any(w in name for w in FACILITATION_WORDS) or re.search(r"\bpc\b", name)):
        lat, lon = (float(v) for v in r["Geo Point"].split(","))
        support.append((lon, lat))


def coverage(code):
    polygon = areas[code]
    simplified = polygon.simplify(SIMPLIFY, preserve_topology=False)
    x0, y0, x1, y1 = polygon.bounds
    nx, ny = math.ceil((x1 - x0) / GRID_DX), math.ceil((y1 - y0) / GRID_DY)
    points = []
    for k in range(nx * ny):
        lon, lat = x0 + (k % nx + 0.5) * GRID_DX, y0 + (k // nx + 0.5) * GRID_DY
        if simplified.contains(Point(lon, lat)):
            points.append((lon, lat))
    if not points:
        p = polygon.representative_point()
        points = [(p.x, p.y)]
    covered = sum(1 for lon, lat in points if any(haversine(lon, lat, s_lon, s_lat) <= SUPPORT_RADIUS_M for s_lon, s_lat in support))
    return len(points), covered


# ANPR, Bologna and the metropolitan comuni.
anpr_population = {r["COD_ISTAT_COMUNE"]: r for r in rows(os.path.join(IT, "anpr_popolazione_residente_export.csv"), ",")}
anpr_activity = {r["COD_ISTAT_COMUNE"]: r for r in rows(os.path.join(IT, "anpr_attivita_residenti_export.csv"), ",")}
bologna_certificates = int(anpr_activity[BOLOGNA_ISTAT]["CERTIFICATI"]) * 1000 / int(anpr_population[BOLOGNA_ISTAT]["RESIDENTI"])

out = []
totals = {"offline": 0, "adults": 0, "within": 0, "population": 0}
for code in sorted(areas):
    f = fragility[code]
    population = f["population"]
    inner = areas[code].representative_point()
    zone = next(name for name, polygon in zones if polygon.contains(inner))
    adults = population * (1 - minors[zone] / everyone[zone])
    grid, covered = coverage(code)
    coverage_pct = covered * 100 / grid
    totals["within"] += round(population * covered / grid)
    totals["population"] += population
    hotspot_rate = hotspots[code] * 1000 / population
    connectivity = 100 - 100 * clamp01(hotspot_rate / 5)
    uptake = 100 - 100 * clamp01((bologna_certificates - 100) / 400)
    support_pillar = 100 - coverage_pct
    row = {"codice_area_statistica": code, "adulti": round(adults), "quota_entro_800m_pct": round(coverage_pct, 2),
           "hotspot_per_1000": round(hotspot_rate, 4), "sonde": probes[code], "connettivita": round(connectivity, 2), "adozione": round(uptake, 2),
           "supporto": round(support_pillar, 2)}
    if f["over_80_pct"] is None:
        # Excluded from the fragility indices: no age shares, so no need pillar and no index.
        row.update({"offline_attesi": "", "quota_offline_attesi_pct": "", "bisogno": "", "indice": ""})
        out.append(row)
        continue
    over_80 = population * f["over_80_pct"] / 100
    age_65_79 = over_80 * RATIO_65_79_TO_80_PLUS
    age_18_64 = adults - age_65_79 - over_80
    offline = age_18_64 * (1 - INTERNET_USE["18_64"]) + age_65_79 * (1 - INTERNET_USE["65_79"]) + over_80 * (1 - INTERNET_USE["80_plus"])
    offline_pct = offline * 100 / adults
    totals["offline"] += round(offline)
    totals["adults"] += adults
    need = (100 * clamp01((offline_pct - 10) / 25) + 100 * clamp01((f["alone_pct"] - 10) / 40) + 100 * clamp01((f["fragility"] - 80) / 40)) / 3
    row.update({"offline_attesi": round(offline), "quota_offline_attesi_pct": round(offline_pct, 2), "bisogno": round(need, 2),
                "_need": need, "_connectivity": connectivity, "_uptake": uptake, "_support": support_pillar})
    out.append(row)

# The index: equal weights, but a pillar that is the same in every area (the demo's uptake, one
# city-wide ANPR figure) carries none; the others share its weight. Pillars are compared as
# published (rounded to 2 decimals).
PILLARS = [("bisogno", "_need"), ("connettivita", "_connectivity"), ("adozione", "_uptake"), ("supporto", "_support")]
varies = {}
for name, key in PILLARS:
    published = [round(r[key], 2) for r in out if key in r]
    varies[name] = max(published) > min(published)
weights = {name: (0.25 if varies[name] else 0.0) for name, _ in PILLARS}
total_weight = sum(weights.values())
for r in out:
    if "_need" not in r:
        continue
    r["indice"] = round(sum(weights[name] * round(r[key], 2) for name, key in PILLARS) / total_weight, 2)
    for _, key in PILLARS:
        del r[key]
print("pillar weights (%):", {name: round(100 * w / total_weight, 1) for name, w in weights.items()})

columns = ["codice_area_statistica", "adulti", "offline_attesi", "quota_offline_attesi_pct", "quota_entro_800m_pct", "hotspot_per_1000", "sonde",
           "bisogno", "connettivita", "adozione", "supporto", "indice"]
with open(os.path.join(HERE, "indicators_per_area.csv"), "w", encoding="utf-8", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(out)

metro = []
for ft in features(os.path.join(BO, "limits_P_37_municipalities.geojson")):
    code = ft["properties"]["com_istat_code"]
    residents = int(anpr_population[code]["RESIDENTI"])
    activity = anpr_activity[code]
    metro.append({"cod_istat_comune": code, "residenti": residents, "operazioni_per_1000": round(int(activity["TOTALE"]) * 1000 / residents, 2),
                  "cambi_residenza_per_1000": round(int(activity["CAMBI_RESIDENZA"]) * 1000 / residents, 2)})
metro.sort(key=lambda r: r["cod_istat_comune"])
with open(os.path.join(HERE, "anpr_services_per_1000.csv"), "w", encoding="utf-8", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=list(metro[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(metro)

indexed = [r for r in out if r["indice"] != ""]
print(f"support places: {len(support)}")
print(f"areas with the index: {len(indexed)} of {len(out)}")
print(f"expected offline adults: {totals['offline']} of {round(totals['adults'])} adults in the areas with data "
      f"({totals['offline'] * 100 / totals['adults']:.1f}%)")
print(f"residents within 800 m of a support place: {totals['within']} of {totals['population']} ({totals['within'] * 100 / totals['population']:.1f}%)")
print(f"Bologna ANPR certificates per 1,000: {bologna_certificates:.4f}")
top = sorted(indexed, key=lambda r: -r["indice"])[:3]
print("highest index:", ", ".join(f"{r['codice_area_statistica']} = {r['indice']}" for r in top))
