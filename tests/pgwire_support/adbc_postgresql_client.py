"""The ADBC PostgreSQL driver (Arrow results over libpq) against cruscotto's pgwire port:
a query into pyarrow and pandas, bound parameters, and the errors.

argv: uri-analyst uri-wrong-key uri-partner http-url slow-sql mode   (mode: "main" or "cancel")
"""
import json
import sys
import threading
import time
import urllib.request

import adbc_driver_postgresql.dbapi as dbapi

uri, wrong, partner, http, slow, mode = sys.argv[1:7]
seen = {}


def error_of(call):
    try:
        call()
    except dbapi.Error as e:
        return {"sqlstate": getattr(e, "sqlstate", None), "message": str(e).strip()}
    return None


def running():
    with urllib.request.urlopen(http + "/readyz") as r:
        return json.load(r).get("running_queries", 0)


if mode == "main":
    with dbapi.connect(uri) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT id, nome, quota, attivo, giorno, istante FROM prova.tipi ORDER BY id")
            table = cur.fetch_arrow_table()
            seen["schema"] = [f"{f.name}:{f.type}" for f in table.schema]
            seen["nome"] = table.column("nome").to_pylist()
            cur.execute("SELECT nome FROM prova.tipi WHERE id = $1", parameters=(2,))
            seen["param"] = cur.fetchall()
            cur.execute("SELECT importo FROM prova.tipi ORDER BY id")
            seen["pandas"] = cur.fetch_df()["importo"].tolist()
        with conn.cursor() as cur:
            seen["refused"] = error_of(lambda: cur.execute("CREATE TABLE x (a int)"))
    with dbapi.connect(uri) as conn:
        with conn.cursor() as cur:
            seen["timeout"] = error_of(lambda: cur.execute(slow))
    seen["wrong_key"] = error_of(lambda: dbapi.connect(wrong))
    seen["partner_key"] = error_of(lambda: dbapi.connect(partner))
else:
    with dbapi.connect(uri) as conn:
        with conn.cursor() as cur:
            def cancel():
                deadline = time.time() + 60
                while running() < 1 and time.time() < deadline:
                    time.sleep(0.05)
                cur.adbc_cancel()

            threading.Thread(target=cancel).start()
            seen["cancelled"] = error_of(lambda: cur.execute(slow))

print(json.dumps(seen, default=str))
