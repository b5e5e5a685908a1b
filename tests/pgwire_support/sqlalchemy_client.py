"""SQLAlchemy 2 (psycopg 3 dialect) against cruscotto's pgwire port: reflection of schemas,
tables, views and columns, a query with bound parameters, pandas.read_sql, and the errors.

argv: url-analyst url-wrong-key url-partner http-url slow-sql mode   (mode: "main" or "cancel")
"""
import json
import sys
import threading
import time
import urllib.request

import pandas
import sqlalchemy
from sqlalchemy import inspect, text

url, wrong, partner, http, slow, mode = sys.argv[1:7]
seen = {}


def error_of(call):
    try:
        call()
    except sqlalchemy.exc.DBAPIError as e:
        return {"sqlstate": getattr(e.orig, "sqlstate", None), "message": str(e.orig).strip()}
    return None


engine = sqlalchemy.create_engine(url)
if mode == "main":
    inspector = inspect(engine)
    seen["schemas"] = sorted(inspector.get_schema_names())
    seen["tables"] = sorted(inspector.get_table_names(schema="prova"))
    seen["views"] = sorted(inspector.get_view_names(schema="queries"))
    seen["columns"] = [
        {"name": c["name"], "type": str(c["type"]), "nullable": c["nullable"]}
        for c in inspector.get_columns("tipi", schema="prova")
    ]
    table = sqlalchemy.Table("tipi", sqlalchemy.MetaData(), autoload_with=engine, schema="prova")
    with engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.select(table.c.id, table.c.nome).where(table.c.id > sqlalchemy.bindparam("n")).order_by(table.c.id),
            {"n": 1},
        ).fetchall()
        seen["select"] = [list(r) for r in rows]
        frame = pandas.read_sql(text("SELECT nome, importo FROM prova.tipi ORDER BY id"), conn)
        seen["pandas"] = frame.to_dict(orient="list")
        seen["refused"] = error_of(lambda: conn.execute(text("DELETE FROM prova.tipi")))
    with engine.connect() as conn:
        seen["timeout"] = error_of(lambda: conn.execute(text(slow)))
    seen["wrong_key"] = error_of(lambda: sqlalchemy.create_engine(wrong).connect())
    seen["partner_key"] = error_of(lambda: sqlalchemy.create_engine(partner).connect())
else:
    def running():
        with urllib.request.urlopen(http + "/readyz") as r:
            return json.load(r).get("running_queries", 0)

    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection

        def cancel():
            deadline = time.time() + 60
            while running() < 1 and time.time() < deadline:
                time.sleep(0.05)
            raw.cancel_safe()

        threading.Thread(target=cancel).start()
        seen["cancelled"] = error_of(lambda: conn.execute(text(slow)))

print(json.dumps(seen, default=str))
