#!/usr/bin/env python3
"""The README's example queries in DuckDB over the same Parquet lineage tables.

    duckdb_sql.py --tables DIR --queries FILE [--runs 5] [--threads 2] [--json OUT]

FILE is what `cargo bench --bench sql -- --queries-out FILE` wrote (the exact SQL
DataFusion ran). Each table is a view over read_parquet('DIR/<table>/**/*.parquet',
hive_partitioning) with the partition column `date` kept as text, as lineage writes it.
Each query runs once cold and --runs times warm (median reported).
"""
import argparse
import json
import os
import statistics
import sys
import time

import duckdb

TABLES = ["events", "credentials", "identities", "edges", "alerts", "actions", "dead_letters"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tables", required=True)
    p.add_argument("--queries", required=True)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--json")
    a = p.parse_args()
    with open(a.queries) as f:
        queries = json.load(f)["queries"]
    con = duckdb.connect(":memory:")
    con.execute(f"SET threads = {a.threads}")
    opened = time.perf_counter()
    for t in TABLES:
        d = os.path.join(a.tables, t)
        has = any(n.endswith(".parquet") and not n.startswith(".")
                  for _, _, names in os.walk(d) for n in names)
        if has:
            con.execute(f"""CREATE VIEW {t} AS SELECT * FROM read_parquet('{d}/**/*.parquet',
                hive_partitioning = true, hive_types = {{'date': VARCHAR}})""")
    open_secs = time.perf_counter() - opened
    out = []
    for q in queries:
        t0 = time.perf_counter()
        rows = len(con.execute(q["sql"]).fetchall())
        cold = time.perf_counter() - t0
        warm = []
        for _ in range(a.runs):
            t0 = time.perf_counter()
            con.execute(q["sql"]).fetchall()
            warm.append(time.perf_counter() - t0)
        out.append({"name": q["name"], "rows": rows, "cold_secs": cold,
                    "warm_secs": statistics.median(warm) if warm else cold})
        print(f"duckdb {q['name']}: {rows} rows, cold {cold:.3f}s, warm {out[-1]['warm_secs']:.3f}s",
              file=sys.stderr)
    doc = {"engine": "duckdb", "duckdb_version": duckdb.__version__, "threads": a.threads,
           "open_secs": open_secs, "runs": a.runs, "queries": out}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=2)
    else:
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    main()
