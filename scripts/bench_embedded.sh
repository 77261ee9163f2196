#!/usr/bin/env bash
# Embedded live-path benchmark (not a test): `lineage run` on the embedded bus
# following four directories (one per source, as a deployment has one connector per
# log), fed the simulator's files in event-time order at a fixed offered rate. Prints a Markdown table of the rate it kept up
# with and the latency from a record being available at the source (the directory
# source's poll returned it) to graph/detect having processed it, p50/p99 from the
# /metrics histogram `lineage_processing_latency_seconds`. A file becomes available
# at most `poll_interval_ms` (100 here) plus `settle_ms` (0 here) after it is
# written. Files are delivered whole and evenly spaced, so within a second the
# offered rate is bursty (a Vault day file is thousands of records).
#
#   scripts/bench_embedded.sh [--agents N] [--days N] [--calls N] [--rates 1000,10000]
set -euo pipefail
cd "$(dirname "$0")/.."
agents=40 days=4 calls=300 rates=1000,10000
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --rates) rates=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-./target}/release/lineage"
source scripts/bench/live_lib.sh
$bin simulate --out "$work/sim" --agents "$agents" --days "$days" --calls-per-agent-day "$calls" >/dev/null
$bin replay "$work/sim/AWSLogs" "$work/sim/Entra" "$work/sim/GitHub" "$work/sim/Vault" \
  --out "$work/count" --no-tables --progress none --show-alerts 0 >/dev/null 2>&1
records=$(python3 -c "import json; print(json.load(open('$work/count/summary.json'))['read'])")


echo "| offered rate | records | events/s kept up (first file → last event processed) | latency p50 | latency p99 |"
echo "|---|---|---|---|---|"
IFS=, read -ra rate_list <<<"$rates"
for rate in "${rate_list[@]}"; do
  follow="$work/follow-$rate"
  mkdir -p "$follow"
  mport=$(free_port)
  cat >"$work/lineage-$rate.toml" <<TOML
[run]
metrics_addr = "127.0.0.1:$mport"
inventory = "$work/sim/inventory.toml"
out_dir = "$work/out-$rate"
poll_interval_ms = 100

TOML
  # One source per log, as a deployment has (S3/SQS, Graph, the audit stream, the
  # socket): the embedded run holds a use until every source has delivered up to
  # its time or has nothing new.
  for d in AWSLogs Entra GitHub Vault; do
    mkdir -p "$follow/$d"
    printf '\n[[source]]\nname = "%s"\nkind = "directory"\npath = "%s"\nsettle_ms = 0\n' "$d" "$follow/$d" >>"$work/lineage-$rate.toml"
  done
  $bin run --config "$work/lineage-$rate.toml" 2>"$work/run-$rate.log" &
  run_pid=$!; pids+=("$run_pid")
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$mport/health" >/dev/null && break; sleep 0.1; done
  t0=$(date +%s.%N)
  # Deliver every file in event-time order, evenly spaced over records / rate seconds.
  python3 - "$work/sim" "$follow" "$records" "$rate" <<'PY'
import os, re, shutil, sys, time
sim, follow, records, rate = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
files = []
for d in ("AWSLogs", "Entra", "GitHub", "Vault"):
    for root, _, names in os.walk(os.path.join(sim, d)):
        for n in names:
            files.append(os.path.join(root, n))
def when(path):
    m = re.search(r"(\d{8}T\d{4})Z", path)
    if m:
        return m.group(1)
    m = re.search(r"(\d{4})-(\d{2})-(\d{2})", path) or re.search(r"(\d{4})/(\d{2})/(\d{2})", path)
    return "".join(m.groups()) + "T0000" if m else "0"
files.sort(key=lambda p: (when(p), p))
gap = records / rate / max(len(files), 1)
start = time.monotonic()
for i, f in enumerate(files):
    time.sleep(max(0.0, start + i * gap - time.monotonic()))
    dest = os.path.join(follow, os.path.relpath(f, sim))
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    tmp = dest + ".part"
    shutil.copyfile(f, tmp)
    os.rename(tmp, dest)
PY
  # Done when graph/detect's count has not moved for 3 s.
  last=-1 same=0 t1=$(date +%s.%N)
  while [ $same -lt 30 ]; do
    g=$(graph_out)
    if [ "$g" != "$last" ]; then last=$g; same=0; t1=$(date +%s.%N); else same=$((same + 1)); fi
    sleep 0.1
  done
  eps=$(python3 -c "print(round($records/($t1-$t0)))")
  echo "| $rate/s | $records | $eps | $(percentiles) |"
  kill "$run_pid" 2>/dev/null || true
  wait "$run_pid" 2>/dev/null || true
done
