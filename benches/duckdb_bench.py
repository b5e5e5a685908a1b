#!/usr/bin/env python3
"""DuckDB side of `cargo bench --bench sql` (benches/sql.rs), which starts it and passes a spec
as JSON on stdin:

    {"parquet": "/abs/sensors.parquet", "threads": 2, "warmup": 2, "runs": 9,
     "queries": [{"name": "a", "sql": "SELECT ... FROM {table} ..."}, ...]}

The queries are written once, in benches/sql.rs; `{table}` becomes `readings` (an in-memory DuckDB
table loaded from the file, the same footing as the server and in-process DataFusion) and, as an
extra, `read_parquet('...')` (DuckDB reading the file on every query).

Prints one JSON object on stdout: the DuckDB version, the load time, per query the median
milliseconds on the table and on read_parquet, and each query's rows (for the result check).
Timestamps are ISO 8601 strings. Run standalone with `python3 benches/duckdb_bench.py spec.json`.

`--serve THREADS` instead keeps one DuckDB session for `cargo bench --bench storage`
(benches/storage.rs), which times it run by run between its HTTP runs: it prints one JSON line
(`version`, `threads`), then answers each line of stdin, `{"sql": "...", "rows": true|false}`,
with one JSON line: `ms`, the wall-clock milliseconds of `execute(sql).fetchall()` (the pipe is
not timed), and the rows when asked, or `error`.
"""

import datetime
import json
import statistics
import sys
import time


def fail(message):
    print(json.dumps({"error": message}))
    sys.exit(2)


try:
    import duckdb
except ImportError as e:
    fail(f"the duckdb Python package is not installed ({e}); run `pip install duckdb`")


def cell(value):
    if isinstance(value, datetime.datetime):
        return value.isoformat(sep="T")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def timed(con, sql, warmup, runs):
    """Median wall-clock milliseconds of `runs` executions after `warmup`, and the rows."""
    rows = None
    for _ in range(warmup):
        rows = con.execute(sql).fetchall()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        rows = con.execute(sql).fetchall()
        samples.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(samples), rows


def main():
    spec = json.load(open(sys.argv[1]) if len(sys.argv) > 1 else sys.stdin)
    parquet = spec["parquet"]
    threads = int(spec["threads"])
    warmup = int(spec.get("warmup", 2))
    runs = int(spec.get("runs", 9))
    file_sql = "read_parquet('" + parquet.replace("'", "''") + "')"

    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {threads}")
    started = time.perf_counter()
    con.execute(f"CREATE TABLE readings AS SELECT * FROM {file_sql}")
    load_ms = (time.perf_counter() - started) * 1000.0
    (count,) = con.execute("SELECT count(*) FROM readings").fetchone()

    table_ms, parquet_ms, results = {}, {}, {}
    for query in spec["queries"]:
        name = query["name"]
        median, rows = timed(con, query["sql"].replace("{table}", "readings"), warmup, runs)
        table_ms[name] = median
        results[name] = [[cell(v) for v in row] for row in rows]
    for query in spec["queries"]:
        name = query["name"]
        median, _ = timed(con, query["sql"].replace("{table}", file_sql), warmup, runs)
        parquet_ms[name] = median

    print(json.dumps({
        "version": duckdb.__version__,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
        "rows_loaded": count,
        "load_ms": load_ms,
        "table_ms": table_ms,
        "parquet_ms": parquet_ms,
        "rows": results,
    }))


def serve(threads):
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {int(threads)}")
    print(json.dumps({
        "version": duckdb.__version__,
        "threads": con.execute("SELECT current_setting('threads')").fetchone()[0],
    }), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            started = time.perf_counter()
            rows = con.execute(request["sql"]).fetchall()
            reply = {"ms": (time.perf_counter() - started) * 1000.0}
            if request.get("rows"):
                reply["rows"] = [[cell(v) for v in row] for row in rows]
        except Exception as e:  # the Rust side reports it with the query
            reply = {"error": f"{type(e).__name__}: {e}"}
        print(json.dumps(reply), flush=True)


if __name__ == "__main__":
    try:
        if len(sys.argv) > 2 and sys.argv[1] == "--serve":
            serve(sys.argv[2])
        else:
            main()
    except Exception as e:  # report, so the Rust side prints a clear error
        fail(f"{type(e).__name__}: {e}")
