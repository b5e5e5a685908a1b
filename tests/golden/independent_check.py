#!/usr/bin/env python3
"""Independent golden values for cruscotto, computed straight from data/.

Written independently of the Rust code. Needs: pip install shapely pandas
(pandas is only used as a cross-check; the main path uses the csv module so
every value is read as text and converted explicitly).

Run from anywhere:  python3 tests/golden/independent_check.py
It rewrites tests/golden/{fragility_2021,hotspots_per_area,
anpr_certificates_per_1000}.csv and prints the numbers quoted in
tests/golden/independent.md.
"""
import csv
import io
import json
import os

import pandas as pd
from shapely.geometry import Point, shape
from shapely.prepared import prep

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
DATA = os.path.join(ROOT, "data")
BO = os.path.join(DATA, "bologna")
IT = os.path.join(DATA, "italia")

FRAG = os.path.join(BO, "indici-di-fragilita-dal-2021.csv")
WIFI = os.path.join(BO, "bolognawifi-elenco-hot-spot.csv")
AREAS = os.path.join(BO, "bologna_aree_statistiche.geojson")
ZONES = os.path.join(BO, "bologna_zone.geojson")
COMUNI = os.path.join(BO, "limits_P_37_municipalities.geojson")
POPSER = os.path.join(
    BO, "popolazione-per-quartiere-zona-sesso-eta-cittadinanza-provincia-di-nascita-serie.csv")
ANPR_POP = os.path.join(IT, "anpr_popolazione_residente_export.csv")
ANPR_ATT = os.path.join(IT, "anpr_attivita_residenti_export.csv")

# delimiter of every CSV in data/ (checked by eye on the header lines)
CSV_DELIMS = {
    "bologna/bologna_aree_statistiche_attributi.csv": ";",
    "bologna/popolazione-per-quartiere-zona-sesso-eta-cittadinanza-provincia-di-nascita-serie.csv": ";",
    "bologna/indici-di-fragilita-dal-2021.csv": ";",
    "bologna/famiglie-residenti-per-quartiere-zona-area-statistica-e-ampiezza-della-famiglia-.csv": ";",
    "bologna/bolognawifi-elenco-hot-spot.csv": ",",
    "bologna/biblioteche-comunali-di-bologna.csv": ";",
    "bologna/mappa-delle-risorse-sociali.csv": ";",
    "bologna/bolognawifi-connessioni-giornaliere.csv": ";",
    "bologna/reddito-mediano-per-area-statistica.csv": ";",
    "italia/anpr_popolazione_residente_export.csv": ",",
    "italia/anpr_attivita_residenti_export.csv": ",",
}


def read_text(path):
    """Decode UTF-8 and strip ALL leading U+FEFF (the population series has two)."""
    with open(path, "rb") as fh:
        raw = fh.read()
    text = raw.decode("utf-8")
    return text.lstrip("\ufeff")


def read_csv_rows(path, delim):
    """List of dicts, every value kept as text (leading zeros preserved)."""
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""), delimiter=delim)
    rows = list(reader)
    return reader.fieldnames, rows


def load_geojson(path):
    with open(path, encoding="utf-8") as fh:
        return json.load(fh)


def write_csv(path, header, rows):
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def fmt4(x):
    return f"{x:.4f}"


out = []  # report lines


def say(*a):
    line = " ".join(str(x) for x in a)
    out.append(line)
    print(line)


# ---------------------------------------------------------------- 1. fragility
say("## 1. Fragility (indici-di-fragilita-dal-2021.csv)")
_, frag = read_csv_rows(FRAG, ";")
say("data rows:", len(frag))
frag21 = [r for r in frag if r["Anno"].strip() == "2021"]
pop21 = {}
perc80 = {}
for r in frag21:
    code = int(r["Cod Area Statistica"])
    assert code not in pop21, f"duplicate area {code}"
    pop21[code] = int(r["Popolazione residente"])  # 2021 rows: plain integers
    perc80[code] = r["Perc residenti oltre 80 anni"].strip()
say("rows with Anno == 2021:", len(frag21))
say("sum Popolazione residente (2021):", sum(pop21.values()))
say("distinct area codes 2021:", len(pop21), "min", min(pop21), "max", max(pop21))
empty80 = sorted(c for c, v in perc80.items() if v == "")
say("2021 areas with empty perc_over_80:", len(empty80), empty80)
write_csv(os.path.join(HERE, "fragility_2021.csv"),
          ["codice_area_statistica", "popolazione", "perc_over_80"],
          [[c, pop21[c], perc80[c]] for c in sorted(pop21)])

# pandas cross-check
dfp = pd.read_csv(io.StringIO(read_text(FRAG)), sep=";", dtype=str)
dfp21 = dfp[dfp["Anno"] == "2021"]
assert len(dfp21) == len(frag21)
assert dfp21["Popolazione residente"].astype(int).sum() == sum(pop21.values())

# ------------------------------------------------------------------- 2. wifi
say("")
say("## 2. Wi-Fi hotspots vs aree statistiche")
areas = load_geojson(AREAS)
area_geoms = []
for ft in areas["features"]:
    p = ft["properties"]
    g = shape(ft["geometry"])
    area_geoms.append((int(p["codice_area_statistica"]), p["area_statistica"], g, prep(g)))
say("invalid area polygons (shapely is_valid False):",
    [c for c, _, g, _ in area_geoms if not g.is_valid])
wifi_fields, wifi = read_csv_rows(WIFI, ",")
say("hotspots:", len(wifi))
n_contains = {0: 0, 1: 0}
n_multi = 0
n_covers_diff = 0
agree = 0
mismatches = []
per_area = {c: 0 for c, _, _, _ in area_geoms}
for r in wifi:
    pt = Point(float(r["x"]), float(r["y"]))  # x = lon, y = lat
    hits = [(c, n) for c, n, g, pg in area_geoms if pg.contains(pt)]
    cov = [c for c, n, g, pg in area_geoms if pg.covers(pt)]
    if sorted(cov) != sorted(c for c, _ in hits):
        n_covers_diff += 1
    k = len(hits)
    if k <= 1:
        n_contains[k] += 1
    else:
        n_multi += 1
    for c, _ in hits:
        per_area[c] += 1
    col = r["area statistica"].strip().casefold()
    if k == 1 and hits[0][1].strip().casefold() == col:
        agree += 1
    else:
        mismatches.append((r["Hostname"], r["x"], r["y"], r["area statistica"],
                           [f"{c}:{n}" for c, n in hits]))
say("in exactly one area:", n_contains[1])
say("in zero areas:", n_contains[0])
say("in more than one area:", n_multi)
say("points where covers() differs from contains():", n_covers_diff)
say("agree with file's `area statistica` (case-insensitive):", agree)
say("mismatches:", len(mismatches))
for m in mismatches:
    say("  MISMATCH", m)
say("sum of hotspots_per_area:", sum(per_area.values()))
say("areas with 0 hotspots:", sum(1 for v in per_area.values() if v == 0))
assert set(per_area) == set(pop21), "area codes differ between geojson and fragility"
rows = []
for c in sorted(per_area):
    pop = pop21[c]
    rate = fmt4(per_area[c] * 1000 / pop) if pop else ""
    rows.append([c, per_area[c], rate])
write_csv(os.path.join(HERE, "hotspots_per_area.csv"),
          ["codice_area_statistica", "hotspots", "hotspots_per_1000"], rows)
say("city-wide hotspots per 1000 residents (2021 pop):",
    fmt4(sum(per_area.values()) * 1000 / sum(pop21.values())))
top = sorted(rows, key=lambda r: -float(r[2] or 0))[:3]
say("top 3 by hotspots_per_1000 [code, hotspots, rate]:", top)

# ------------------------------------------------------------------- 3. ANPR
say("")
say("## 3. ANPR certificates per 1,000 residents, Città metropolitana di Bologna")
comuni = load_geojson(COMUNI)
codes = {}
for ft in comuni["features"]:
    p = ft["properties"]
    codes[p["com_istat_code"]] = p["name"]
say("comuni in geojson:", len(codes))
_, apop = read_csv_rows(ANPR_POP, ",")
_, aatt = read_csv_rows(ANPR_ATT, ",")
say("ANPR population rows:", len(apop), "activity rows:", len(aatt))
popd, attd = {}, {}
for r in apop:
    k = r["COD_ISTAT_COMUNE"]
    assert k not in popd, f"dup pop {k}"
    popd[k] = r
for r in aatt:
    k = r["COD_ISTAT_COMUNE"]
    assert k not in attd, f"dup att {k}"
    attd[k] = r
rows = []
missing = []
for code in sorted(codes):
    if code in popd and code in attd:
        res = int(popd[code]["RESIDENTI"])
        cert = int(attd[code]["CERTIFICATI"])
        rows.append([code, popd[code]["COMUNE"], res, cert, fmt4(cert * 1000 / res)])
    else:
        missing.append((code, codes[code], code in popd, code in attd))
say("joined (present in both ANPR files):", len(rows), "of", len(codes))
say("not joined:", missing)
name_diff = [(r[0], r[1], attd[r[0]]["COMUNE"]) for r in rows if r[1] != attd[r[0]]["COMUNE"]]
say("COMUNE name differs between the two ANPR files:", name_diff)
say("sum residenti:", sum(r[2] for r in rows), "sum certificati:", sum(r[3] for r in rows),
    "overall per 1000:", fmt4(sum(r[3] for r in rows) * 1000 / sum(r[2] for r in rows)))
say("Bologna (037006):", [r for r in rows if r[0] == "037006"])
write_csv(os.path.join(HERE, "anpr_certificates_per_1000.csv"),
          ["cod_istat_comune", "comune", "residenti", "certificati", "certificati_per_1000"], rows)

# ------------------------------------------------------- 4. population series
say("")
say("## 4. Population series")
with open(POPSER, "rb") as fh:
    head = fh.read(9)
say("first bytes:", head.hex(" "), "(two UTF-8 BOMs = ef bb bf ef bb bf)")
fields, ps = read_csv_rows(POPSER, ";")
say("first header after stripping:", repr(fields[0]))
say("data rows:", len(ps))
blank = [i for i, r in enumerate(ps) if not any((v or "").strip() for v in r.values())]
say("blank rows:", len(blank))
for y in ("2021", "2023"):
    vals = [r[y].strip() for r in ps]
    bad = [v for v in vals if not v.lstrip("-").isdigit()]
    say(f"sum {y}:", sum(int(v) for v in vals if v.lstrip('-').isdigit()),
        f"(non-integer cells: {len(bad)} {sorted(set(bad))[:5]})")
dps = pd.read_csv(io.StringIO(read_text(POPSER)), sep=";", dtype=str)
say("pandas cross-check rows:", len(dps), "sum 2023:", dps["2023"].astype(int).sum(),
    "sum 2021:", dps["2021"].astype(int).sum())

# ---------------------------------------------------------------- 5. reference
say("")
say("## 5. Reference")
for path in (AREAS, ZONES, COMUNI):
    gj = load_geojson(path)
    props = []
    for ft in gj["features"]:
        for k in ft["properties"]:
            if k not in props:
                props.append(k)
    gtypes = sorted({ft["geometry"]["type"] for ft in gj["features"]})
    say(f"{os.path.basename(path)}: features={len(gj['features'])} geometry={gtypes} "
        f"crs={'declared' if 'crs' in gj else 'none'} props={props}")
say("")
say("CSV quoted fields containing newlines:")
for rel, delim in CSV_DELIMS.items():
    text = read_text(os.path.join(DATA, rel))
    rdr = csv.reader(io.StringIO(text, newline=""), delimiter=delim)
    header = next(rdr)
    hdr_nl = [h for h in header if "\n" in h or "\r" in h]
    cols = {}
    for row in rdr:
        for i, v in enumerate(row):
            if "\n" in v or "\r" in v:
                name = header[i] if i < len(header) else f"#{i}"
                cols[name] = cols.get(name, 0) + 1
    if hdr_nl or cols:
        say(f"  {rel}: header={[h.replace(chr(10), '<LF>').replace(chr(13), '<CR>') for h in hdr_nl]} "
            f"data cells per column={ {k.replace(chr(10), '<LF>'): v for k, v in cols.items()} }")
say("  (all other CSVs: none)")

