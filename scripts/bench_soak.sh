#!/usr/bin/env bash
# Soak benchmark (not a test): `lineage run` for a long time at a fixed rate, its
# resident memory sampled every 10 s, to show it stays flat once warm.
#
#   scripts/bench_soak.sh --mode embedded|kafka [--minutes 30] [--rate 5000] [--png FILE]
#                         [--storage memory|sqlite]
#
# Records: the simulator's CloudTrail history, replayed lap after lap as new history
# (scripts/bench/soak_gen.py: every lap new event ids, new session keys, times one
# span later), written as one delivery file per second into a directory that
# `lineage run` follows (embedded: a `directory` source; kafka: `lineage ingest
# auto directory` into a local tansu broker, all stages in one `lineage run`).
# `[graph] retain_days = 1`, so with days of event time per minute the graph
# forgets idle session keys all the time. Prints a Markdown summary and writes a
# CSV and (with --png) a plot of the RSS of `lineage run` (and of the broker).
#
# Kafka mode: tansu keeps its topics in memory (about 4 KB per record processed), so
# the topics lineage creates get `retention.ms` = 120000 (`[bus.topic_config]`) and
# the broker enforces it every 30 s (`?maintenance_interval=30s`; a fix of
# scripts/services/tansu.sh: tansu 0.6.0 ignored retention). The broker then holds
# about the last 2.5 minutes, not the whole run. At the end (kafka mode) `lineage
# run` is restarted with the whole run as its history: the time from its start to a
# new record processed, and whether it restored its snapshot or re-read history.
#
# `--storage sqlite` (kafka mode) has tansu keep its topics in an SQLite (libSQL)
# file in the work directory instead. It needs tansu built with its `libsql`
# feature: built once into ~/.cache/lineage-lite by scripts/services/tansu.sh,
# beside the tests' build. (At 5,000 events/s it never assigned the consumer group
# on this machine; see BENCHMARKS.md.)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=embedded minutes=30 rate=5000 png="" storage=memory
while [ $# -gt 0 ]; do
  case "$1" in
    --mode) mode=$2; shift 2 ;;
    --minutes) minutes=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --png) png=$2; shift 2 ;;
    --storage) storage=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-./target}/release/lineage"
source scripts/bench/live_lib.sh
$bin simulate --out "$work/sim" --agents 40 --days 4 --calls-per-agent-day 300 >/dev/null
follow="$work/follow"
mkdir -p "$follow"
mport=$(free_port)
cat >"$work/lineage.toml" <<TOML
[run]
metrics_addr = "127.0.0.1:$mport"
inventory = "$work/sim/inventory.toml"
out_dir = "$work/out"
poll_interval_ms = 100
no_tables = true

[graph]
retain_days = 1
TOML
broker_pid=""
if [ "$mode" = kafka ]; then
  engine="memory://tansu/?maintenance_interval=30s"
  if [ "$storage" = sqlite ]; then
    tansu=$(LINEAGE_CACHE_DIR="${XDG_CACHE_HOME:-$HOME/.cache}/lineage-lite" \
      LINEAGE_TANSU_FEATURES=dynostore,libsql scripts/services/tansu.sh install)
    engine="sqlite://tansu.db"
  else
    tansu=$(scripts/services/tansu.sh install)
  fi
  bport=$(free_port)
  (cd "$work" && exec "$tansu" broker --storage-engine "$engine" \
    --listener-url "tcp://127.0.0.1:$bport" --advertised-listener-url "tcp://127.0.0.1:$bport" \
    >"$work/tansu.log" 2>&1) &
  broker_pid=$!; pids+=("$broker_pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$bport) 2>/dev/null && break; sleep 0.1; done
  printf '\n[bus]\nkind = "kafka"\nbrokers = "127.0.0.1:%s"\ngroup_id = "soak"\n' "$bport" >>"$work/lineage.toml"
  printf '\n[bus.topic_config]\n"retention.ms" = "120000"\n' >>"$work/lineage.toml"
else
  printf '\n[[source]]\nname = "soak"\nkind = "directory"\npath = "%s"\nsettle_ms = 0\n' "$follow" >>"$work/lineage.toml"
fi
$bin run --config "$work/lineage.toml" 2>"$work/run.log" &
run_pid=$!; pids+=("$run_pid")
for _ in $(seq 600); do curl -sf "http://127.0.0.1:$mport/health" >/dev/null && break; sleep 0.1; done
if [ "$mode" = kafka ]; then
  $bin ingest auto directory "$follow" --settle-ms 0 --brokers "127.0.0.1:$bport" \
    --from-checkpoint "$work/ingest.json" 2>"$work/ingest.log" &
  pids+=("$!")
fi
seconds=$((minutes * 60))
python3 scripts/bench/soak_gen.py "$work/sim/AWSLogs" "$follow" "$rate" "$seconds" >"$work/offered" &
gen_pid=$!; pids+=("$gen_pid")
rss() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
csv="$work/soak.csv"
echo "seconds,lineage_rss_kib,broker_rss_kib,events_processed,mem_available_kib" >"$csv"
t0=$SECONDS stopped=""
while kill -0 "$gen_pid" 2>/dev/null; do
  avail=$(awk '/^MemAvailable:/ {print $2}' /proc/meminfo)
  echo "$((SECONDS - t0)),$(rss "$run_pid"),$([ -n "$broker_pid" ] && rss "$broker_pid" || echo 0),$(graph_out),$avail" >>"$csv"
  if [ "$avail" -lt 2000000 ]; then
    stopped="stopped after $((SECONDS - t0)) s: under 2 GB of memory left on the machine"
    kill "$gen_pid" 2>/dev/null || true
    break
  fi
  sleep 10
done
wait "$gen_pid" 2>/dev/null || true
offered=$(cat "$work/offered" 2>/dev/null || echo "?")
processed=$(graph_out)
[ -n "$png" ] && cp "$csv" "${png%.png}.csv"
python3 - "$csv" "$mode" "$rate" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
mode, rate = sys.argv[2], sys.argv[3]
def mib(r, k): return int(r[k]) / 1024
warm = [r for r in rows if int(r["seconds"]) >= 300] or rows
lin = [mib(r, "lineage_rss_kib") for r in warm]
first, last = lin[0], lin[-1]
print(f"| {mode} | {rate}/s | {int(rows[-1]['seconds'])} s | {rows[-1]['events_processed']} | "
      f"{first:.0f} MiB | {max(lin):.0f} MiB | {last:.0f} MiB | "
      f"{mib(rows[-1], 'broker_rss_kib'):.0f} MiB |")
PY
echo
echo "offered: $offered records; processed by graph/detect: $processed${stopped:+; $stopped}"
[ "$storage" = sqlite ] && echo "broker store on disk: $(du -ch "$work"/tansu.db* | tail -1 | cut -f1)"
if [ "$mode" = kafka ] && [ -z "$stopped" ]; then
  # A restart with the whole run as history: once graph/detect has caught up (no
  # change for 3 s), SIGTERM, start again, offer one new record, and time from the
  # start to that record processed.
  wait_caught_up
  kill -TERM "$run_pid"; wait "$run_pid" || true
  probe_record "$work/restart-probe.json" restart-probe-1 2035-01-01T00:00:00Z AKIARESTARTPROBE0001 \
    s3.amazonaws.com ListBuckets
  r0=$(date +%s.%N)
  $bin run --config "$work/lineage.toml" 2>"$work/run-restart.log" &
  run_pid=$!; pids+=("$run_pid")
  for _ in $(seq 600); do curl -sf "http://127.0.0.1:$mport/health" >/dev/null && break; sleep 0.05; done
  offer_and_wait "$bin" "127.0.0.1:$bport" "$work/restart-probe.json" 1800
  r1=$(date +%s.%N)
  echo "restart after $last events of history: $(python3 -c "print('%.1f' % ($r1-$r0))") s from start to the first new record processed;" \
    "restored from snapshot: $(metric_value lineage_graph_restored_from_snapshot)" \
    "($(du -sh "$work/out/state/graph-snapshot" | cut -f1));" \
    "events re-read: $(metric_value lineage_graph_rebuild_events);" \
    "output messages read: $(metric_value lineage_graph_output_ids_read)"
fi
if [ -n "$png" ]; then
  venv="${XDG_CACHE_HOME:-$HOME/.cache}/lineage/venv-plot"
  [ -x "$venv/bin/python" ] || { python3 -m venv "$venv" && "$venv/bin/pip" install --quiet matplotlib; }
  "$venv/bin/python" scripts/bench/plot_rss.py "$csv" "$png" "$mode" "$rate"
  echo "plot: $png"
fi
