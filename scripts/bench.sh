#!/usr/bin/env bash
# Runs every benchmark of issue 9 and appends one section to BENCHMARKS.md with the
# command, the git revision, the machine (cores, memory), the date and the wall time.
#
#   scripts/bench.sh                          # sizes 100k and 1M CloudTrail events
#   scripts/bench.sh --large                  # adds 10M (about 12 GB of JSON, 1.3 GB gzip)
#   scripts/bench.sh --sizes 20000 --out /tmp/smoke.md --no-kafka   # a quick smoke run
#
# Options:
#   --sizes N,N,...   CloudTrail events per archive (default 100000,1000000)
#   --large           add 10000000 to the sizes
#   --out FILE        append the section to FILE instead of BENCHMARKS.md
#   --no-kafka        skip scripts/bench_kafka.sh (also LINEAGE_BENCH_KAFKA=0)
#   --profile         perf-record the 1-thread replay of the smallest size (needs perf)
#   --work DIR        data and results (default $LINEAGE_BENCH_DIR or /tmp/lineage-bench);
#                     simulated archives are reused from there when present
#
# What runs (release builds only), per size: the simulator (seed 42) writes the archive;
# `cargo bench --bench replay` measures the gunzip + serde_json baselines and the full
# replay path (parse → graph → detect → sinks + Parquet tables) at 1 and 2 threads and
# over all four sources; `lineage replay` under peak_rss.py gives peak RSS; DuckDB (PyPI,
# in a venv under ~/.cache/lineage/venv-bench) normalizes and attributes the same files
# in SQL. Then `cargo bench --bench graph_mem` (1M distinct credentials), the README's
# SQL examples over the largest size's tables in DataFusion and DuckDB, the Kafka path
# (scripts/bench_kafka.sh) and the demo's quality score. scripts/bench/report.py renders
# the section.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$(date +%s)
command="scripts/bench.sh${*:+ $*}"

sizes=100000,1000000 large=0 out=BENCHMARKS.md kafka=${LINEAGE_BENCH_KAFKA:-1} profile=0
work=${LINEAGE_BENCH_DIR:-${TMPDIR:-/tmp}/lineage-bench}
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) sizes=$2; shift 2 ;;
    --large) large=1; shift ;;
    --out) out=$2; shift 2 ;;
    --no-kafka) kafka=0; shift ;;
    --profile) profile=1; shift ;;
    --work) work=$2; shift 2 ;;
    -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
    *) echo "unknown argument $1 (see --help)" >&2; exit 1 ;;
  esac
done
[ "$large" = 1 ] && sizes="$sizes,10000000"
IFS=, read -r -a sizes <<<"$sizes"
largest=${sizes[-1]}
for s in "${sizes[@]}"; do [ "$s" -gt "$largest" ] && largest=$s; done
case "$out" in /*) ;; *) out="$root/$out" ;; esac
mkdir -p "$work"
work=$(cd "$work" && pwd)
res="$work/results-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$res"
log() { echo "== bench: $*" >&2; }

# --- Python venv with DuckDB (cached; created when missing or broken) ---
cache=${LINEAGE_CACHE_DIR:-$HOME/.cache/lineage}
venv="$cache/venv-bench"
if ! "$venv/bin/python" -c 'import duckdb' 2>/dev/null; then
  log "installing DuckDB from PyPI into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check duckdb
fi
py="$venv/bin/python"

# --- release builds (never debug) ---
log "building (release)"
cargo bench --bench replay --bench graph_mem --bench sql --no-run --quiet
cargo build --release --locked --quiet -p lineage
bin="${CARGO_TARGET_DIR:-$root/target}/release/lineage"

# --- per size: simulate + throughput (with baselines), peak RSS, DuckDB peer ---
for s in "${sizes[@]}"; do
  dir="$work/$s"
  log "size $s: simulate (if needed) + replay throughput vs baselines"
  cargo bench --quiet --bench replay -- --events "$s" --dir "$dir" --json "$res/replay-$s.json" | tee "$res/replay-$s.md"
  log "size $s: peak RSS of lineage replay"
  rm -rf "$dir/rss-out"
  "$py" scripts/bench/peak_rss.py --json "$res/rss-$s.json" --label "lineage replay ($s)" -- \
    "$bin" replay "$dir/sim/AWSLogs" --inventory "$dir/sim/inventory.toml" --out "$dir/rss-out" --progress none
  cp "$dir/rss-out/summary.json" "$res/rss-$s-summary.json"
  readers=objects
  [ "$s" = "${sizes[0]}" ] && readers=objects,read_json
  log "size $s: DuckDB peer ($readers)"
  "$py" scripts/bench/duckdb_peer.py --sim "$dir/sim" --threads 1,2 --readers "$readers" \
    --ours-events "$dir/out-1/tables/events" --json "$res/duckdb-$s.json"
done

# --- profile of the hot path (optional) ---
if [ "$profile" = 1 ]; then
  if perf stat -e task-clock true >/dev/null 2>&1; then
    s=${sizes[0]}; dir="$work/$s"
    log "perf record: lineage replay --threads 1 ($s)"
    rm -rf "$dir/perf-out"
    perf record -e cpu-clock -F 999 -g -o "$res/perf.data" -- "$bin" replay "$dir/sim/AWSLogs" \
      --inventory "$dir/sim/inventory.toml" --out "$dir/perf-out" --threads 1 --progress none >/dev/null 2>&1
    {
      echo "CPU samples per thread (threads are unnamed: tell them by their top symbols below; gunzip + serde_json = parser, regex/globset = attribute stage + detectors, arrow_json/zstd = events-table sink, the smallest = the merge):"
      perf report -i "$res/perf.data" --no-children --sort pid --stdio -g none 2>/dev/null | grep -E '^ +[0-9.]+%'
      echo
      echo "Top symbols per thread (self time):"
      perf report -i "$res/perf.data" --no-children --sort pid,symbol --stdio -g none --percent-limit 1.5 2>/dev/null \
        | grep -E '^ +[0-9.]+%' | head -30
    } | sed -E 's/ +-? +-? *$//' > "$res/profile.txt" || true
  else
    log "perf is not usable here; no profile"
  fi
fi

# --- 1M distinct credentials in the graph ---
log "graph with 1M distinct credentials"
cargo bench --quiet --bench graph_mem -- --credentials 1000000 --json "$res/graph_mem.json"

# --- SQL over the largest size's tables: DataFusion vs DuckDB ---
tables="$work/$largest/out-1/tables"
log "SQL over $tables"
cargo bench --quiet --bench sql -- --tables "$tables" --runs 5 --json "$res/sql-datafusion.json"
"$py" scripts/bench/duckdb_sql.py --tables "$tables" --queries "$res/sql-datafusion.json" \
  --runs 5 --threads "$(nproc)" --json "$res/sql-duckdb.json"

# --- Kafka path (another issue's script; its own defaults) ---
if [ "$kafka" != 0 ]; then
  log "Kafka path (scripts/bench_kafka.sh)"
  if scripts/bench_kafka.sh | tee "$res/kafka.out"; then :; else echo "bench_kafka.sh failed (exit $?)" > "$res/kafka.skipped"; fi
  grep '^|' "$res/kafka.out" > "$res/kafka.md" || true
  [ -s "$res/kafka.md" ] || rm -f "$res/kafka.md"
else
  echo "skipped with --no-kafka / LINEAGE_BENCH_KAFKA=0" > "$res/kafka.skipped"
fi

# --- quality ---
log "quality (lineage demo)"
"$bin" demo --show-alerts 0 | sed -n '/score against/,$p' | grep -v '^==' > "$res/quality.txt" || true

# --- report ---
git_rev="$(git rev-parse --short HEAD)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
"$py" - "$res/meta.json" <<PY
import json, sys, platform, duckdb
json.dump({
  "command": """$command""",
  "revision": """$git_rev""",
  "machine": """$(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB memory, $(uname -sr)""",
  "date": """$(date -u +%Y-%m-%dT%H:%MZ)""",
  "sizes": [int(x) for x in "${sizes[*]}".split()],
  "wall_secs": $(( $(date +%s) - started )),
  "duckdb_version": duckdb.__version__,
  "python_version": platform.python_version(),
}, open(sys.argv[1], "w"), indent=2)
PY
"$py" scripts/bench/report.py "$res" > "$res/section.md"
cat "$res/section.md" >> "$out"
cat "$res/section.md"
log "appended to $out (results in $res; wall time $(( $(date +%s) - started )) s)"
