#!/usr/bin/env python3
"""Renders the results scripts/bench.sh collected (JSON files in one directory) as a
Markdown section for BENCHMARKS.md. Prints to stdout.

    report.py RESULTS_DIR
"""
import glob
import json
import os
import sys


def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def text(path):
    try:
        with open(path) as f:
            return f.read().rstrip("\n")
    except OSError:
        return None


def n(x, digits=0):
    return f"{x:,.{digits}f}" if isinstance(x, (int, float)) else "–"


def size_name(events):
    events = int(events)
    for unit, div in (("M", 1_000_000), ("k", 1_000)):
        if events >= div and events % div == 0:
            return f"{events // div}{unit}"
    return str(events)


def main():
    res = sys.argv[1]
    meta = load(os.path.join(res, "meta.json")) or {}
    sizes = sorted(int(s) for s in meta.get("sizes", []))
    out = []
    p = out.append
    p("")
    p(f"## Benchmark run, {meta.get('date', '?')}")
    p("")
    p(f"- command: `{meta.get('command', 'scripts/bench.sh')}`")
    p(f"- revision: {meta.get('revision', '?')}")
    p(f"- machine: {meta.get('machine', '?')}")
    p(f"- wall time of the whole script: {n(meta.get('wall_secs'))} s"
      f" ({n((meta.get('wall_secs') or 0) / 60, 1)} min, builds included)")
    p(f"- DuckDB {meta.get('duckdb_version', '?')} (PyPI), Python {meta.get('python_version', '?')}")
    p("")

    replays = {s: load(os.path.join(res, f"replay-{s}.json")) for s in sizes}
    duck = {s: load(os.path.join(res, f"duckdb-{s}.json")) for s in sizes}

    # --- data ---
    p("### Data (simulator, seed 42; CloudTrail `.json.gz` in the S3 delivery layout, other sources in proportion)")
    p("")
    p("| size | estate (agents × days × calls/agent-day) | CloudTrail events | files | JSON MB | gzip MB | all four sources: events read (cloudtrail / entra / github / vault) |")
    p("|---|---|---|---|---|---|---|")
    for s in sizes:
        r = replays[s]
        if not r:
            p(f"| {size_name(s)} | – | – | – | – | – | – |")
            continue
        e = r["estate"]
        bs = r["all_sources"].get("by_source", {})
        p(f"| {size_name(s)} | {e['agents']} × {e['days']} × {e['calls_per_agent_day']} "
          f"| {n(r['cloudtrail_events'])} | {n(r['cloudtrail_files'])} "
          f"| {n(r['cloudtrail_json_bytes'] / 1e6, 1)} | {n(r['cloudtrail_gz_bytes'] / 1e6, 1)} "
          f"| {n(r['all_sources']['events'])} ({' / '.join(n(bs.get(k, 0)) for k in ('cloudtrail', 'entra', 'github', 'vault'))}) |")
    p("")

    # --- throughput ---
    p("### Replay throughput vs the physical-limit baseline (same files, same run)")
    p("")
    p("| size | measurement | threads | events | seconds | events/s | MB/s (JSON) | events/s per core |")
    p("|---|---|---|---|---|---|---|---|")
    for s in sizes:
        r = replays[s]
        if not r:
            continue
        for row in r["rows"]:
            p(f"| {size_name(s)} | {row['what']} | {row['threads']} | {n(row['events'])} | {row['secs']:.2f} "
              f"| {n(row['events_per_sec'])} | {n(row['mb_per_sec'], 1)} | {n(row['events_per_sec_per_core'])} |")
    p("")

    # --- DuckDB ---
    p("### Peer: DuckDB on the same `.json.gz` files (normalize + attribution join in SQL)")
    p("")
    p("| size | DuckDB reader | threads | events | normalize s | attribute s | total s | events/s | lineage replay events/s (same threads) | lineage / DuckDB |")
    p("|---|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for s in sizes:
        d, r = duck[s], replays[s]
        if not d or not r:
            continue
        ours = {x["threads"]: x["events_per_sec"] for x in r["replay"]}
        for run in d["runs"]:
            o = ours.get(run["threads"])
            ratio = o / run["events_per_sec"] if o else None
            if run["reader"] == "objects" and ratio:
                ratios.setdefault(s, {})[run["threads"]] = ratio
            p(f"| {size_name(s)} | {run['reader']} | {run['threads']} | {n(run['events'])} | {run['normalize_secs']:.2f} "
              f"| {run['attribute_secs']:.2f} | {run['secs']:.2f} | {n(run['events_per_sec'])} | {n(o)} "
              f"| {n(ratio, 2)} |")
    p("")
    for s in sizes:
        d = duck[s]
        if d and d["runs"] and "agreement" in d["runs"][0]:
            a = d["runs"][0]["agreement"]
            p(f"- {size_name(s)}: DuckDB's attribution agrees with lineage's `events` table on "
              f"{n(a['same_agent_and_owner'])} of {n(a['joined'])} CloudTrail events (same agent and owner); "
              f"events with an owner: lineage {n(a['ours_with_owner'])}, DuckDB {n(a['duckdb_with_owner'])}. "
              f"Methods (DuckDB): {', '.join(f'{k} {n(v)}' for k, v in d['runs'][0]['methods'].items())}.")
    p("")
    p("What differs: DuckDB attributes with the issuance graph of the whole archive (lineage: the graph as of "
      "each event, in event-time order), reads only the fields the attribution needs, and runs no detectors and "
      "writes nothing (lineage also runs five detectors, writes alerts, dead letters, the summary and the Parquet "
      "tables). `objects` = `read_json_objects` + `from_json` with an explicit structure, the faster of the two "
      "DuckDB readers we tried and the one the ratio uses; `read_json` = `read_json(columns = {...})` with the same "
      "explicit types (measured at the smallest size only: it is several times slower on files that are one big "
      "object each).")
    p("")

    # --- ratios ---
    p("### Ratios")
    p("")
    p("| size | replay (1 thread) / typed-parse baseline | per round: min–max (rounds) | target | lineage / DuckDB, 1 thread | lineage / DuckDB, 2 threads | target | without tables: replay / typed | without tables: lineage / DuckDB, 1 thread |")
    p("|---|---|---|---|---|---|---|---|---|")
    for s in sizes:
        r = replays[s]
        if not r:
            continue
        one = next((x for x in r["replay"] if x["threads"] == 1), None)
        typed = r["typed"]["events_per_sec"]
        rt = one["events_per_sec"] / typed if one else None
        dr = ratios.get(s, {})
        nt = (r.get("no_tables") or {}).get("events_per_sec")
        d1 = next((x["events_per_sec"] for x in (duck[s] or {}).get("runs", [])
                   if x["reader"] == "objects" and x["threads"] == 1), None)
        rounds = [x["ratio"] for x in r.get("typed_replay_pairs", [])]
        spread = f"{min(rounds):.2f}–{max(rounds):.2f} ({len(rounds)})" if rounds else "–"
        p(f"| {size_name(s)} | {n(rt, 2)} | {spread} | ≥ 0.5: {'met' if rt and rt >= 0.5 else 'NOT met'} "
          f"| {n(dr.get(1), 2)} | {n(dr.get(2), 2)} | ≥ 5: {'met' if dr and min(dr.values()) >= 5 else 'NOT met'} "
          f"| {n(nt / typed if nt else None, 2)} | {n(nt / d1 if nt and d1 else None, 2)} |")
    p("")

    # --- memory ---
    p("### Memory and cost growth (`lineage replay` of the CloudTrail archive, all cores, tables on)")
    p("")
    p("| size | events | wall s | µs per event | peak RSS MiB | peak buffered records (merge) |")
    p("|---|---|---|---|---|---|")
    mem = []
    for s in sizes:
        m = load(os.path.join(res, f"rss-{s}.json"))
        summ = load(os.path.join(res, f"rss-{s}-summary.json")) or {}
        if not m:
            continue
        ev = summ.get("read") or 0
        mem.append((s, ev, m["secs"], m["peak_rss_kb"]))
        p(f"| {size_name(s)} | {n(ev)} | {m['secs']:.2f} | {n(1e6 * m['secs'] / ev if ev else None, 2)} "
          f"| {n(m['peak_rss_kb'] / 1024, 1)} | {n(summ.get('peak_buffered_records'))} |")
    p("")
    if len(mem) >= 2:
        a, b = mem[0], mem[-1]
        if a[1] and b[1]:
            p(f"Growth {size_name(a[0])} → {size_name(b[0])}: events ×{b[1] / a[1]:.1f}, time ×{b[2] / a[2]:.1f}, "
              f"peak RSS ×{b[3] / a[3]:.1f}.")
            p("")
    g = load(os.path.join(res, "graph_mem.json"))
    if g:
        p(f"Lineage graph with {n(g['credentials'])} distinct credentials (`cargo bench --bench graph_mem`: "
          f"issue, observe, attribute and record the reach of each; 1,000 declared roots, sessions chained up to "
          f"two hops): {g['secs']:.2f} s, resident memory {n(g['rss_before_kb'] / 1024, 1)} → "
          f"{n(g['rss_after_kb'] / 1024, 1)} MiB (peak {n(g['peak_rss_kb'] / 1024, 1)} MiB), "
          f"{n(g['bytes_per_credential'])} bytes per credential.")
        p("")

    # --- SQL ---
    df = load(os.path.join(res, "sql-datafusion.json"))
    dd = load(os.path.join(res, "sql-duckdb.json"))
    if df:
        p(f"### SQL: the README's example queries over the {size_name(sizes[-1]) if sizes else ''} replay's tables "
          f"({n(int(df.get('events') or 0))} events; same Parquet files)")
        p("")
        p("| query | rows (DataFusion / DuckDB) | DataFusion cold s | DataFusion warm s | DuckDB cold s | DuckDB warm s | DataFusion / DuckDB (warm time) |")
        p("|---|---|---|---|---|---|---|")
        dq = {q["name"]: q for q in (dd or {}).get("queries", [])}
        for q in df["queries"]:
            o = dq.get(q["name"], {})
            ratio = q["warm_secs"] / o["warm_secs"] if o.get("warm_secs") else None
            p(f"| {q['name']} | {q['rows']} / {o.get('rows', '–')} | {q['cold_secs']:.3f} | {q['warm_secs']:.3f} "
              f"| {n(o.get('cold_secs'), 3)} | {n(o.get('warm_secs'), 3)} | {n(ratio, 2)} |")
        p("")
        p(f"DataFusion through `lineage_sql::open_session` + `run_query` (what `lineage sql` runs; session opened "
          f"in {df['open_secs']:.3f} s); DuckDB through views over `read_parquet(..., hive_partitioning)` "
          f"({(dd or {}).get('threads', '?')} threads). Warm = median of {df.get('runs')} runs after the cold one.")
        p("")

    # --- Kafka ---
    k = text(os.path.join(res, "kafka.md"))
    if k:
        p("### Kafka path (`scripts/bench_kafka.sh`, tansu in-memory broker on the same machine)")
        p("")
        p(k)
        p("")
    elif os.path.exists(os.path.join(res, "kafka.skipped")):
        p(f"### Kafka path: not run ({text(os.path.join(res, 'kafka.skipped'))})")
        p("")

    # --- profile ---
    prof = text(os.path.join(res, "profile.txt"))
    if prof:
        p("### Profile (`perf record -e cpu-clock` of `lineage replay --threads 1`, tables on, smallest size)")
        p("")
        p("```")
        p(prof)
        p("```")
        p("")

    # --- quality ---
    q = text(os.path.join(res, "quality.txt"))
    if q:
        p("### Quality (`lineage demo`, seed 7, all four sources, against the simulator's ground truth)")
        p("")
        p("```")
        p(q)
        p("```")
        p("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
