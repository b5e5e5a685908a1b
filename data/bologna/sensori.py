#!/usr/bin/env python3
"""Generate sensori.csv, the demo's sensor registry, from the real open data beside it.

The sensors are fictional; their places are real: a Wi-Fi load sensor at each of the 303
BolognaWiFi access points, a connectivity probe and a people counter at each of the 18 municipal
libraries, a people counter at each digital facilitation point of the social-resources map
(the same selection as queries/mappa_facilitazione_digitale.sql), and 13 environmental sensors
at every 25th access point. Deterministic: run it again and the file is byte-identical.

    python3 data/bologna/sensori.py      # writes data/bologna/sensori.csv
"""

import csv
import hashlib
import io
import re
import unicodedata
from datetime import date, timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent


def slug(text):
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40].strip("-")


def installed_at(sensor_id):
    """A stable installation date between 2019-01-01 and 2023-12-31."""
    days = int(hashlib.sha256(sensor_id.encode()).hexdigest()[:8], 16) % (5 * 365)
    return (date(2019, 1, 1) + timedelta(days=days)).isoformat()


def read(name, delimiter):
    text = (HERE / name).read_text(encoding="utf-8-sig").lstrip("\ufeff")
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter))


def lat_lon(text):
    lat, lon = (float(v) for v in text.split(","))
    return lon, lat


def main():
    sensors = []
    hotspots = read("bolognawifi-elenco-hot-spot.csv", ",")
    for spot in hotspots:
        sensors.append(("wifi-" + spot["Hostname"], "wifi_ap", float(spot["x"]), float(spot["y"]), spot["Hostname"]))
    for library in read("biblioteche-comunali-di-bologna.csv", ";"):
        lon, lat = lat_lon(library["Geo Point"])
        name = library["Biblioteca"].strip()
        sensors.append(("sonda-" + slug(name), "connectivity_probe", lon, lat, name))
        sensors.append(("conta-" + slug(name), "people_counter", lon, lat, name))
    seen = set()
    for resource in read("mappa-delle-risorse-sociali.csv", ";"):
        name = resource["NOME"].split("\n")[0].strip()
        if resource["ATTIVITA'"] != "Supporto informatico e burocratico":
            continue
        if not re.search(r"informatic|digital|spid|smartphone|computer|internet|facilitaz|\bpc\b", resource["NOME"].lower()):
            continue
        sensor_id = "conta-" + slug(name)
        if sensor_id in seen or any(s[0] == sensor_id for s in sensors):
            sensor_id = f"{sensor_id}-{len(seen) + 1}"
        seen.add(sensor_id)
        lon, lat = lat_lon(resource["Geo Point"])
        sensors.append((sensor_id, "people_counter", lon, lat, name))
    for number, spot in enumerate(hotspots[::25], start=1):
        sensors.append((f"amb-{number:02d}", "environment", float(spot["x"]), float(spot["y"]), spot["Hostname"]))

    out = io.StringIO(newline="")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sensor_id", "kind", "lon", "lat", "installed_at", "place"])
    for sensor_id, kind, lon, lat, place in sensors:
        writer.writerow([sensor_id, kind, f"{lon:.6f}", f"{lat:.6f}", installed_at(sensor_id), place])
    (HERE / "sensori.csv").write_text(out.getvalue(), encoding="utf-8")
    counts = {}
    for s in sensors:
        counts[s[1]] = counts.get(s[1], 0) + 1
    print(f"sensori.csv: {len(sensors)} sensors {counts}")


if __name__ == "__main__":
    main()
