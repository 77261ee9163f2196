#!/usr/bin/env bash
# Runs the benchmarks and appends the figures to BENCHMARKS.md with the command,
# the git revision, the machine and the date.
#
#   scripts/bench.sh                 # 100k events
#   scripts/bench.sh --events 1000000
set -euo pipefail
cd "$(dirname "$0")/.."
args=("$@")
[ ${#args[@]} -eq 0 ] && args=(--events 100000)
out=$(mktemp)
cargo bench --bench replay -- "${args[@]}" | tee "$out"
cargo build --release --quiet
{
  echo
  echo "## Replay throughput, $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "- command: \`scripts/bench.sh ${args[*]}\`"
  echo "- revision: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
  echo "- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(free -g | awk '/Mem:/ {print $2}') GiB memory, $(uname -sr)"
  echo
  grep '^|' "$out"
  echo
  echo "Quality on the same revision (\`lineage demo\`, seed 7, all four sources, against the simulator's ground truth):"
  echo
  echo '```'
  ./target/release/lineage demo --show-alerts 0 | sed -n '/score against/,$p' | grep -v '^=='
  echo '```'
} >> BENCHMARKS.md
rm -f "$out"
echo "appended to BENCHMARKS.md"

# --- Kafka path (scripts/bench_kafka.sh): throughput and ingest → detect latency on tansu ---
# Skip with LINEAGE_BENCH_KAFKA=0.
if [ "${LINEAGE_BENCH_KAFKA:-1}" != 0 ]; then
  kout=$(mktemp)
  scripts/bench_kafka.sh | tee "$kout"
  {
    echo
    echo "## Kafka path, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- command: \`scripts/bench_kafka.sh\` (tansu in-memory broker, one \`lineage run\` with all stages)"
    echo "- revision: $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)')"
    echo
    grep '^|' "$kout"
  } >> BENCHMARKS.md
  rm -f "$kout"
fi
# --- end Kafka path ---
