"""psycopg 3 against cruscotto's pgwire port: parameters, a server-side cursor, types both ways
(text and binary), and the errors. Prints one JSON object of what it saw; the Rust test asserts.

argv: dsn-analyst dsn-wrong-key dsn-partner http-url mode   (mode: "main" or "cancel")
"""
import datetime
import decimal
import json
import sys
import threading
import time
import urllib.request

import psycopg

dsn, wrong, partner, http, mode = sys.argv[1:6]
seen = {}


def error_of(call):
    try:
        call()
    except psycopg.Error as e:
        return {"sqlstate": e.sqlstate, "message": str(e).strip()}
    return None


def running():
    with urllib.request.urlopen(http + "/readyz") as r:
        return json.load(r).get("running_queries", 0)


if mode == "main":
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Parameters, with the server's inferred types and with declared ones.
        rows = conn.execute(
            "SELECT id, nome FROM prova.tipi WHERE id >= %s AND nome <> %s ORDER BY id",
            (2, "nessuno"),
        ).fetchall()
        seen["params"] = [list(r) for r in rows]
        # Types: text and binary results give the same Python values.
        for binary in (False, True):
            cur = conn.cursor(binary=binary)
            cur.execute("SELECT id, nome, quota, attivo, giorno, istante, importo FROM prova.tipi ORDER BY id")
            row = cur.fetchone()
            seen["binary" if binary else "text"] = {
                "id": row[0], "nome": row[1], "quota": row[2], "attivo": row[3],
                "giorno": row[4].isoformat(), "istante": row[5].isoformat(), "importo": row[6],
                "python_types": [type(v).__name__ for v in row],
            }
        # Values sent as parameters come back as they went (round trip).
        values = (42, 2.5, "àè 'quoted'", True, datetime.date(2024, 2, 29),
                  datetime.datetime(2024, 3, 1, 10, 0, 0))
        row = conn.execute(
            "SELECT %s::bigint, %s::double precision, %s::text, %s::boolean, %s::date, %s::timestamp",
            values,
        ).fetchone()
        seen["round_trip"] = [row[0], row[1], row[2], row[3], row[4].isoformat(), row[5].isoformat()]
        seen["round_trip_equal"] = tuple(row) == values
        row = conn.execute("SELECT CAST(12.50 AS DECIMAL(10,2)), ARRAY[1,2,3], INTERVAL '1 day'").fetchone()
        seen["numeric_array_interval"] = [str(row[0]), row[1], str(row[2])]
        # Geometry is WKB (bytea).
        row = conn.execute("SELECT ST_AsBinary(ST_GeomFromText('POINT(11.34 44.49)'))").fetchone()
        seen["geometry_bytes"] = len(bytes(row[0]))
        # A refused statement, the session goes on.
        seen["refused"] = error_of(lambda: conn.execute("DROP TABLE prova.tipi"))
        seen["after_refusal"] = conn.execute("SELECT 1").fetchone()[0]
        seen["unknown_table"] = error_of(lambda: conn.execute("SELECT * FROM nessuna"))
        seen["timeout"] = error_of(lambda: conn.execute(sys.argv[6]))
    # A server-side cursor inside a transaction: DECLARE, FETCH in pages, CLOSE.
    with psycopg.connect(dsn) as conn:
        with conn.cursor(name="pagine") as cur:
            cur.itersize = 2
            cur.execute("SELECT id FROM prova.tipi WHERE id <= %s ORDER BY id", (3,))
            seen["cursor_description"] = [c.name for c in cur.description]
            seen["cursor_first"] = cur.fetchmany(2)
            seen["cursor_rest"] = cur.fetchall()
    seen["wrong_key"] = error_of(lambda: psycopg.connect(wrong))
    seen["partner_key"] = error_of(lambda: psycopg.connect(partner))
else:
    # Cancel a running query from another thread, once the server runs it.
    with psycopg.connect(dsn, autocommit=True) as conn:
        def cancel():
            deadline = time.time() + 60
            while running() < 1 and time.time() < deadline:
                time.sleep(0.05)
            conn.cancel_safe()
        threading.Thread(target=cancel).start()
        seen["cancelled"] = error_of(lambda: conn.execute(sys.argv[6]))
        seen["after_cancel"] = conn.execute("SELECT 2").fetchone()[0]

print(json.dumps(seen, default=str))
