#!/usr/bin/env bash
# tansu (a Kafka-protocol broker) for the Kafka alert sink's test (sinks/tests/kafka_sink.rs).
#
#   scripts/services/tansu.sh install     install (idempotent) and print the `tansu` binary's path
#   scripts/services/tansu.sh start DIR   start an in-memory broker on a free 127.0.0.1 port and
#                                         create the topic `lineage.alerts` (tansu does not
#                                         auto-create topics); prints
#                                         `export LINEAGE_KAFKA_BROKERS=127.0.0.1:PORT`
#   scripts/services/tansu.sh stop DIR    stop the broker started in DIR
#
# The binary is built from crates.io with `cargo install --locked` (pinned below; a
# few minutes the first time) into ~/.cache/lineage/tansu, and reused when that root
# already holds the pinned version. The test starts its own broker from the path
# `install` prints (export it as LINEAGE_TANSU_BIN); `start`/`stop` are for poking at
# a broker by hand. Everything listens on 127.0.0.1 only; storage is in memory.
set -euo pipefail
# shellcheck source=scripts/services/common.sh
source "$(dirname "$0")/common.sh"

TANSU_VERSION="0.6.0"
CACHE="${LINEAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lineage}"
ROOT="$CACHE/tansu"
BIN="$ROOT/bin/tansu"

log() { echo "tansu.sh: $*" >&2; }

installed() {
  [ -x "$BIN" ] && grep -q "\"tansu $TANSU_VERSION " "$ROOT/.crates.toml" 2>/dev/null
}

install() {
  if installed; then
    echo "$BIN"
    return 0
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo not found: it is needed to build tansu from crates.io"
    exit 1
  fi
  log "building tansu $TANSU_VERSION into $ROOT (cargo install; a few minutes the first time)"
  mkdir -p "$ROOT"
  cargo install --locked tansu --version "=$TANSU_VERSION" --features dynostore --root "$ROOT" >&2
  if [ ! -x "$BIN" ]; then
    log "cargo install finished but $BIN is missing"
    exit 1
  fi
  echo "$BIN"
}

start() {
  local dir="${1:?usage: tansu.sh start DIR}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin port
  bin=$(install)
  port=$(free_port)
  nohup "$bin" broker \
    --storage-engine memory://tansu/ \
    --listener-url "tcp://127.0.0.1:$port" \
    --advertised-listener-url "tcp://127.0.0.1:$port" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  printf 'export LINEAGE_KAFKA_BROKERS=127.0.0.1:%s\n' "$port" >"$dir/env"
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "the broker exited; see $dir/server.log"
      tail -20 "$dir/server.log" >&2
      exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      "$bin" topic create lineage.alerts --broker "tcp://127.0.0.1:$port" >>"$dir/server.log" 2>&1 ||
        log "could not create the topic lineage.alerts; see $dir/server.log"
      cat "$dir/env"
      return 0
    fi
    sleep 0.2
  done
  log "no broker listening on 127.0.0.1:$port after 60 s; see $dir/server.log"
  stop "$dir"
  exit 1
}

dispatch "$@"
