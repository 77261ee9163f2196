#!/usr/bin/env bash
# Kafka-path benchmark (not a test): throughput of normalize → graph → detect on the
# Kafka bus and ingest → graph/detect output latency p50/p99 at fixed offered rates,
# on a local tansu broker (in-memory storage). Prints a Markdown table.
#
#   scripts/bench_kafka.sh [--agents N] [--days N] [--calls N]
#
# Each measurement gets a fresh broker. First the broker's own ceiling for the same
# flow (`cargo bench --bench kafka_ceiling`: the raw records relayed to an events
# topic and consumed, same sizes and per-batch flush and commit, no lineage work).
# "max" ingests everything first and times `lineage run` from its start to the graph
# stage having emitted every event (also from its first processed event, and the
# start-up before it: topic checks and consumer-group joins); the
# fixed rates start `lineage run` first and offer the four sources at once, each with
# `lineage ingest --rate` at its share of R (its share of the records, so all four
# run for the same time), then again with Entra silent for the first 60 s. Latency is the /metrics histogram lineage_processing_latency_seconds
# (raw message timestamp at ingest → event processed by graph/detect), p50/p99
# interpolated within its buckets; at fixed rates, of the records offered after a
# probe record showed the pipeline had its partitions.
set -euo pipefail
cd "$(dirname "$0")/.."
agents=40 days=4 calls=300
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-./target}/release/lineage"
tansu=$(scripts/services/tansu.sh install)
source scripts/bench/live_lib.sh
$bin simulate --out "$work/sim" --agents "$agents" --days "$days" --calls-per-agent-day "$calls" >/dev/null
inputs=$(find "$work/sim" -mindepth 1 -maxdepth 1 -type d | sort)

start_broker() {
  bport=$(free_port)
  (cd "$work" && exec "$tansu" broker --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$bport" --advertised-listener-url "tcp://127.0.0.1:$bport" \
    >"$work/tansu-$bport.log" 2>&1) &
  broker_pid=$!; pids+=("$broker_pid")
  for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/$bport) 2>/dev/null && break; sleep 0.1; done
}
start_run() {
  mport=$(free_port)
  cat >"$work/lineage.toml" <<TOML
[bus]
kind = "kafka"
brokers = "127.0.0.1:$bport"
group_id = "bench"
[run]
metrics_addr = "127.0.0.1:$mport"
inventory = "$work/sim/inventory.toml"
out_dir = "$work/out-$bport"
TOML
  $bin run --config "$work/lineage.toml" 2>"$work/run-$bport.log" &
  run_pid=$!; pids+=("$run_pid")
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$mport/health" >/dev/null && break; sleep 0.1; done
}
metric() { # sum of a metric's lines matching a filter
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1" -v f="$2" 'index($0,n)==1 && index($0,f) {s+=$NF} END {print s+0}'
}
wait_done() { # until normalize has read every record and graph/detect has drained
  # Done: normalize has read at least every record, graph/detect has no lag and holds
  # nothing, and the count of events it processed has not moved for 2 s. (Not
  # "graph in = normalize out - joined": a redelivered Vault request/response pair
  # makes those counters differ while nothing is missing.) Fails after 15 minutes.
  # Sets last_change: when the processed count last moved (the end of the run).
  # Also sets t10/t80: when graph/detect had processed 10% and 80% of the records
  # (the steady-state rate, without start-up and the idle tail).
  local want=$1 last=-1 same_since deadline=$((SECONDS + 900))
  same_since=$SECONDS; t10=""; t80=""
  while :; do
    m=$(curl -s "http://127.0.0.1:$mport/metrics")
    sum() { awk -v s="$1" -v o="$2" 'index($0,"lineage_events_total{stage=\""s"\"") && index($0,"outcome=\""o"\"") {t+=$NF} END {print t+0}' <<<"$m"; }
    n=$(sum normalize in); g=$(sum graph out)
    # Raw-topic lag is not used: tansu reports a partition's high watermark as the base
    # offset of its last batch, so it can stay above the consumer's position.
    glag=$(awk 'index($0,"lineage_consumer_lag{stage=\"graph\"") {t+=$NF} END {print t+0}' <<<"$m")
    held=$(awk 'index($0,"lineage_graph_held_events ")==1 {print $NF}' <<<"$m")
    if [ "$g" != "$last" ]; then last=$g; same_since=$SECONDS; last_change=$(date +%s.%N); fi
    if [ -z "$t10" ] && [ $((g * 10)) -ge "$want" ]; then t10=$(date +%s.%N); fi
    if [ -z "$t80" ] && [ $((g * 10)) -ge $((want * 8)) ]; then t80=$(date +%s.%N); fi
    if [ "$n" -ge "$want" ] && [ "$g" -gt 0 ] && [ "$glag" = 0 ] && [ "${held:-1}" = 0 ] &&
      [ $((SECONDS - same_since)) -ge 2 ]; then
      break
    fi
    if [ $SECONDS -ge $deadline ]; then
      echo "bench_kafka.sh: not done after 15 minutes (normalize in $n of $want, graph out $g, lag $glag, held $held)" >&2
      exit 1
    fi
    sleep 0.1
  done
}

first_processed() { # waits until graph/detect has processed an event; prints when
  for _ in $(seq 3000); do
    [ "$(graph_out)" -gt 0 ] && break
    sleep 0.05
  done
  date +%s.%N
}

# The broker's own ceiling for the same flow (no lineage work), in a fresh broker.
start_broker
# (Ingested one source at a time: each source's record count sets its share of the
# fixed rates below.)
declare -A share
ceiling_records=0
for dir in $inputs; do
  share[$dir]=$($bin ingest auto --to kafka --brokers "127.0.0.1:$bport" --from "$dir" | python3 -c 'import json,sys; print(json.load(sys.stdin)["read"])')
  ceiling_records=$((ceiling_records + share[$dir]))
done
cargo bench --quiet --bench kafka_ceiling -- --brokers "127.0.0.1:$bport" --records "$ceiling_records" --json "$work/ceiling.json" >&2
ceiling=$(python3 -c "import json; print(round(json.load(open('$work/ceiling.json'))['records_per_sec']))")
kill "$broker_pid" 2>/dev/null || true

echo "| offered rate | records | events/s (normalize → graph → detect), from process start | from the first processed event | steady (10% → 80% of records processed) | start → first processed event | latency p50 | latency p99 |"
echo "|---|---|---|---|---|---|---|---|"
# max: everything ingested first
start_broker
report=$($bin ingest auto --to kafka --brokers "127.0.0.1:$bport" --from $inputs)
records=$(echo "$report" | python3 -c 'import json,sys; print(json.load(sys.stdin)["read"])')
t0=$(date +%s.%N); start_run; tf=$(first_processed); wait_done "$records"; t1=$last_change
eps=$(python3 -c "print(round($records/($t1-$t0)))")
eps_first=$(python3 -c "print(round($records/($t1-$tf)))")
startup=$(python3 -c "print('%.1f s' % ($tf-$t0))")
steady=$(python3 -c "print(round(0.7*$records/max($t80-$t10,0.1)))")
echo "| max (pre-ingested) | $records | $eps | $eps_first | $steady | $startup | $(percentiles) |"
kill "$run_pid" "$broker_pid" 2>/dev/null || true
# Fixed rates: the four sources offered at once, each at its share of the rate (its
# share of the records, so all four run for the same time, as live sources do);
# then again with Entra (the departures) silent for the first 60 s.
offer() { # rate, source directory name to keep silent for 60 s (or "")
  # (Started 0.3 s apart: four producers initialising at once made tansu time one
  # out once.) A failed ingest fails the benchmark.
  local rate=$1 silent=$2 dir r delay offers=()
  for dir in $inputs; do
    r=$(python3 -c "print(max(1, round($rate * ${share[$dir]} / $ceiling_records)))")
    delay=0; [ "$(basename "$dir")" = "$silent" ] && delay=60
    (sleep "$delay"; $bin ingest auto --to kafka --brokers "127.0.0.1:$bport" --rate "$r" --from "$dir" >/dev/null) &
    offers+=($!)
    sleep 0.3
  done
  for pid in "${offers[@]}"; do wait "$pid"; done
}
for rate in 1000 10000; do
  for silent in "" Entra; do
    start_broker; start_run
    # Offered once the pipeline has its partitions (one probe record processed), so
    # the latency is the steady state's; start-up is the "max" row's figure.
    warm_up "$bin" "127.0.0.1:$bport"
    latency_baseline "$work/latency0"
    t0=$(date +%s.%N)
    offer "$rate" "$silent"
    wait_done "$((records + 1))"; t1=$last_change
    eps=$(python3 -c "print(round($records/($t1-$t0)))")
    label="$rate/s, four sources at once"
    [ -n "$silent" ] && label="$rate/s, $silent silent for the first 60 s"
    echo "| $label | $records | $eps | – | – | – | $(percentiles "$work/latency0") |"
    kill "$run_pid" "$broker_pid" 2>/dev/null || true
  done
done
echo
echo "Broker-only ceiling for the same flow (\`cargo bench --bench kafka_ceiling\`: raw → events relay and events consumer, same topics, message sizes and per-batch flush and commit, no lineage work): $ceiling records/s."
