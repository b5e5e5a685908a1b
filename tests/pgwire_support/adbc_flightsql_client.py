"""The ADBC Flight SQL driver against cruscotto's Flight SQL port: statements into pyarrow and
pandas, a prepared statement with a parameter, the catalogue (GetObjects: catalogs, schemas,
tables), and the errors.

argv: uri key wrong-key partner-key http-url slow-sql mode [ca.pem]   (mode: "main" or "cancel")
"""
import json
import sys
import threading
import time
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as dbapi


uri, key, wrong, partner, http, slow, mode = sys.argv[1:8]
ca = sys.argv[8] if len(sys.argv) > 8 else None
seen = {}


def connect(token):
    options = {adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {token}"}
    if ca:
        options[adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value] = open(ca).read()
    return dbapi.connect(uri, db_kwargs=options)


def error_of(call):
    try:
        call()
    except dbapi.Error as e:
        return {"status": getattr(e, "status_code", None) and e.status_code.name, "message": str(e).strip()}
    return None


def running():
    with urllib.request.urlopen(http + "/readyz") as r:
        return json.load(r).get("running_queries", 0)


if mode == "main":
    with connect(key) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT id, nome, quota, attivo, giorno, istante FROM prova.tipi ORDER BY id")
            table = cur.fetch_arrow_table()
            seen["schema"] = [f"{f.name}:{f.type}" for f in table.schema]
            seen["rows"] = table.num_rows
            cur.execute("SELECT nome, importo FROM prova.tipi ORDER BY id")
            frame = cur.fetch_df()
            seen["pandas"] = frame.to_dict(orient="list")
            cur.execute("SELECT nome FROM prova.tipi WHERE id = $1", parameters=(3,))
            seen["prepared"] = cur.fetchall()
            seen["refused"] = error_of(lambda: cur.execute("DROP TABLE prova.tipi"))
        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        seen["catalogs"] = [o["catalog_name"] for o in objects]
        seen["tables"] = sorted(
            f"{s['db_schema_name']}.{t['table_name']}"
            for o in objects
            for s in (o["catalog_db_schemas"] or [])
            for t in (s["db_schema_tables"] or [])
        )
        with conn.cursor() as cur:
            seen["timeout"] = error_of(lambda: (cur.execute(slow), cur.fetchall()))
    seen["wrong_key"] = error_of(lambda: connect(wrong).cursor().execute("SELECT 1"))
    seen["partner_key"] = error_of(lambda: connect(partner).cursor().execute("SELECT 1"))
else:
    with connect(key) as conn:
        with conn.cursor() as cur:
            def cancel():
                deadline = time.time() + 60
                while running() < 1 and time.time() < deadline:
                    time.sleep(0.05)
                cur.adbc_cancel()

            threading.Thread(target=cancel).start()
            seen["cancelled"] = error_of(lambda: (cur.execute(slow), cur.fetchall()))

print(json.dumps(seen, default=str))
