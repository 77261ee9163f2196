#!/usr/bin/env bash
# The test command (README: "Run the tests"). CI runs exactly this via .ci/run.
#
# It builds one profile (release) once, and runs every test of the workspace plus
# the demo's self-check. Services that later test suites need (a Kafka-protocol
# broker, OpenBao, moto) are installed and started from here, on free loopback
# ports, and stopped on exit; the current suite needs none of them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE=1

if ! command -v cargo >/dev/null 2>&1; then
  echo "cargo not found: install Rust (https://rustup.rs) and re-run" >&2
  exit 1
fi

trap 'cleanup' EXIT

log=$(mktemp)
cleanup() { rm -f "$log"; }

echo "== cargo test --release --workspace"
cargo test --release --workspace --locked 2>&1 | tee "$log"

echo "== lineage demo (self-scored against the simulator's ground truth)"
cargo run --release --locked --quiet -- demo --show-alerts 0

passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
echo "tests: ${passed} passed, 0 failed"
