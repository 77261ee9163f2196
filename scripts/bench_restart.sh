#!/usr/bin/env bash
# Kafka-path restart benchmark (not a test): how long a restarted `lineage run` takes
# from process start to processing its first new record, with N events of history
# already processed on the topics (tansu in memory). Prints a Markdown table, one row
# per history size (simulated days of the same estate).
#
#   scripts/bench_restart.sh [--agents N] [--calls N] [--days 4,48]
#   scripts/bench_restart.sh --compact 1000000,10000000
#
# `--compact N,…`: instead of simulated days, N compact CloudTrail records: the
# simulator's records (4 days) of long-lived keys, cut to the fields attribution
# reads and repeated with new ids and later times. tansu keeps every record in
# memory (about 4 KB per full simulated event over all topics), so 10M full events
# do not fit this machine; compact ones do.
#
# For each size: a fresh broker, the simulated history ingested and processed by a
# first `lineage run` (until graph/detect has processed everything), SIGTERM, then a
# second `lineage run` is started and one new CloudTrail record ingested; the figure
# is from the second process's start to graph/detect having processed that record.
# The graph stage restores its snapshot (written at SIGTERM) and re-reads only the
# events after it; /metrics says whether it restored one and how many it re-read.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=40 calls=300 days_list=4,48 compact=""
while [ $# -gt 0 ]; do
  case "$1" in
    --compact) compact=$2; shift 2 ;;
    --agents) agents=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --days) days_list=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-./target}/release/lineage"
tansu=$(scripts/services/tansu.sh install)
source scripts/bench/live_lib.sh
start_run() { # $1: log name
  cat >"$work/lineage.toml" <<TOML
[bus]
kind = "kafka"
brokers = "127.0.0.1:$bport"
group_id = "restart"
[run]
metrics_addr = "127.0.0.1:$mport"
inventory = "$work/sim/inventory.toml"
out_dir = "$work/out"
TOML
  RUST_LOG=warn LINEAGE_LOG=info "$bin" run --config "$work/lineage.toml" 2>"$work/$1.log" &
  run_pid=$!; pids+=("$run_pid")
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$mport/health" >/dev/null && break; sleep 0.05; done
}

echo "| history (events read) | first run: all processed in | restart → first new record processed | restored from snapshot (its size) | events re-read from lineage.events |"
echo "|---|---|---|---|---|"
IFS=, read -ra sizes <<<"${compact:-$days_list}"
for size in "${sizes[@]}"; do
  rm -rf "$work/sim" "$work/out"
  if [ -n "$compact" ]; then
    "$bin" simulate --out "$work/sim" --agents "$agents" --days 4 --calls-per-agent-day "$calls" >/dev/null
    python3 - "$work/sim" "$size" <<'PY2'
import datetime, glob, gzip, json, os, shutil, sys
sim, n = sys.argv[1], int(sys.argv[2])
keep = ("eventVersion", "eventTime", "eventSource", "eventName", "awsRegion", "sourceIPAddress", "errorCode")
base = []
for path in glob.glob(os.path.join(sim, "AWSLogs", "**", "*.json.gz"), recursive=True):
    for r in json.load(gzip.open(path))["Records"]:
        ui = r.get("userIdentity") or {}
        if str(ui.get("accessKeyId", "")).startswith("AKIA"):
            c = {k: r[k] for k in keep if k in r}
            c["userIdentity"] = {k: ui[k] for k in ("type", "accessKeyId", "userName", "accountId", "arn") if k in ui}
            base.append(c)
base.sort(key=lambda r: r["eventTime"])
fmt = "%Y-%m-%dT%H:%M:%SZ"
t0 = datetime.datetime.strptime(base[0]["eventTime"], fmt)
span = datetime.datetime.strptime(base[-1]["eventTime"], fmt) - t0 + datetime.timedelta(seconds=1)
for d in os.listdir(sim):
    if os.path.isdir(os.path.join(sim, d)):
        shutil.rmtree(os.path.join(sim, d))
out = os.path.join(sim, "compact")
os.makedirs(out)
per_file = 200_000
for f in range(0, n, per_file):
    recs = []
    for i in range(f, min(n, f + per_file)):
        lap, j = divmod(i, len(base))
        r = dict(base[j])
        r["eventID"] = f"c-{i}"
        t = datetime.datetime.strptime(r["eventTime"], fmt) + lap * span
        r["eventTime"] = t.strftime(fmt)
        recs.append(r)
    with open(os.path.join(out, f"part-{f // per_file:05d}.json"), "w") as fh:
        json.dump({"Records": recs}, fh)
PY2
  else
    "$bin" simulate --out "$work/sim" --agents "$agents" --days "$size" --calls-per-agent-day "$calls" >/dev/null
  fi
  bport=$(free_port); mport=$(free_port)
  (cd "$work" && RUST_LOG=warn exec "$tansu" broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$bport" --advertised-listener-url "tcp://127.0.0.1:$bport" \
    >"$work/tansu.log" 2>&1) &
  broker_pid=$!; pids+=("$broker_pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$bport) 2>/dev/null && break; sleep 0.1; done
  inputs=$(find "$work/sim" -mindepth 1 -maxdepth 1 -type d | sort)
  records=$("$bin" ingest auto --to kafka --brokers "127.0.0.1:$bport" --from $inputs | python3 -c 'import json,sys; print(json.load(sys.stdin)["read"])')
  rm -rf "$work/out"
  t0=$(date +%s.%N)
  start_run first
  wait_caught_up
  first=$(python3 -c "print('%.1f s' % ($t1-$t0))")
  kill -TERM "$run_pid"; wait "$run_pid" || true
  # One new record, after the restart.
  probe_record "$work/new.json" restart-probe-1 2030-01-01T00:00:00Z AKIARESTARTPROBE0001 \
    s3.amazonaws.com ListBuckets
  t0=$(date +%s.%N)
  start_run second
  offer_and_wait "$bin" "127.0.0.1:$bport" "$work/new.json" 1800
  t1=$(date +%s.%N)
  restart=$(python3 -c "print('%.1f s' % ($t1-$t0))")
  restored=$([ "$(metric_value lineage_graph_restored_from_snapshot)" = 1 ] && echo yes || echo no)
  re_events=$(metric_value lineage_graph_rebuild_events)
  snap=$(du -sh "$work/out/state/graph-snapshot" 2>/dev/null | cut -f1 || echo "-")
  echo "| $records | $first | $restart | ${restored:-?} (${snap:-none}) | ${re_events:-?} |"
  kill "$run_pid" "$broker_pid" 2>/dev/null || true
  wait "$run_pid" "$broker_pid" 2>/dev/null || true
done
