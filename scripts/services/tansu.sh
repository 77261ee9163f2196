#!/usr/bin/env bash
# tansu (a Kafka-protocol broker) for the tests that need Kafka (the Kafka alert sink, the
# live pipeline on the Kafka bus, ingest to Kafka).
#
#   scripts/services/tansu.sh install     install (idempotent) and print the `tansu` binary's path
#   scripts/services/tansu.sh start DIR   start an in-memory broker on a free 127.0.0.1 port and
#                                         create the topic `lineage.alerts` (tansu does not
#                                         auto-create topics); prints
#                                         `export LINEAGE_KAFKA_BROKERS=127.0.0.1:PORT`
#   scripts/services/tansu.sh stop DIR    stop the broker started in DIR
#
# The binary is built from the crates.io sources of tansu 0.6.0 (pinned by sha256)
# with four fixes applied (tansu-0.6.0-fixes.patch beside this script; a few
# minutes the first time) into ~/.cache/lineage/tansu, and reused when that root
# already holds this version built with this patch. The fixes:
#   - tansu-storage, memory/object-store engine: a fetch from an offset *inside* a
#     record batch skipped the rest of that batch (Kafka returns the whole batch and
#     the client skips what precedes the offset). A consumer resuming from a
#     committed offset that is not a batch boundary lost those records; the crash
#     test of tests/kafka_pipeline.rs found it.
#   - tansu-broker, group coordinator: a join did not count as contact, so a static
#     member taking over after a restart kept its previous incarnation's last
#     contact and was expired by its own first heartbeat (a rebalance, and at times a
#     group that never assigned again).
#   - tansu-broker, group coordinator: a static member's JoinGroup or SyncGroup
#     skipped the session check of the other members, so a dead static member under
#     another instance id (a process restarted from a moved config file) was never
#     expired and the group never formed again. The check now runs on every request;
#     the asking static member's own instance counts as in contact. And a follower's
#     SyncGroup while the group had no leader (expired) formed the group from the
#     follower's empty assignments, leaving every partition unassigned; it now gets
#     REBALANCE_IN_PROGRESS and joins again.
#   - tansu-storage, memory/object-store engine: `retention.ms` was ignored, so the
#     broker held every record it was ever sent (about 4 KB each here). Its periodic
#     maintenance (`?maintenance_interval=30s` on the storage URL; 10 minutes by
#     default) now deletes the batches stored longer ago than their topic's
#     `retention.ms` (not of compacted topics; the newest batch of a partition stays)
#     and moves the log start; a fetch skips a batch deleted under it. The soak
#     benchmark on the Kafka path needs it to run 30 minutes in this machine's memory.
# The test starts its own broker from the path `install` prints (export it as
# LINEAGE_TANSU_BIN); `start`/`stop` are for poking at a broker by hand. Everything
# listens on 127.0.0.1 only; storage is in memory.
#
# LINEAGE_TANSU_FEATURES (default `dynostore`) builds other storage engines in too,
# for the benchmarks that need more than memory holds: `dynostore,libsql` with
# LINEAGE_CACHE_DIR pointing elsewhere keeps the tests' build as it is.
set -euo pipefail
# shellcheck source=scripts/services/common.sh
source "$(dirname "$0")/common.sh"

TANSU_VERSION="0.6.0"
# sha256 of the .crate files on crates.io (tansu's own Cargo.lock pins the other two).
declare -A CRATE_SHA256=(
  [tansu]=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
  [tansu-storage]=720d2ed8e6010c70f7f06e5af5a7274ebbf6e42fdcd9e46de542b10dc4d2f35d
  [tansu-broker]=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720
)
PATCH="$(cd "$(dirname "$0")" && pwd)/tansu-$TANSU_VERSION-fixes.patch"
CACHE="${LINEAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lineage}"
ROOT="$CACHE/tansu"
BIN="$ROOT/bin/tansu"

log() { echo "tansu.sh: $*" >&2; }

FEATURES="${LINEAGE_TANSU_FEATURES:-dynostore}"

stamp() {
  local features=""
  [ "$FEATURES" = dynostore ] || features=" features=$FEATURES"
  echo "tansu $TANSU_VERSION $(sha256sum "$PATCH" | cut -d' ' -f1)$features"
}

installed() {
  [ -x "$BIN" ] && [ "$(cat "$ROOT/stamp" 2>/dev/null)" = "$(stamp)" ]
}

install() {
  if installed; then
    echo "$BIN"
    return 0
  fi
  local tool
  for tool in cargo curl patch python3; do
    if ! command -v "$tool" >/dev/null 2>&1; then
      log "$tool not found: it is needed to build tansu from its crates.io sources"
      exit 1
    fi
  done
  log "building tansu $TANSU_VERSION (patched) into $ROOT (a few minutes the first time)"
  local src="$ROOT/src" crate
  rm -rf "$src"
  mkdir -p "$src"
  for crate in tansu tansu-storage tansu-broker; do
    curl -sSfL --retry 3 -o "$src/$crate.crate" \
      "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate"
    if [ "$(sha256sum "$src/$crate.crate" | cut -d' ' -f1)" != "${CRATE_SHA256[$crate]}" ]; then
      log "$crate-$TANSU_VERSION.crate does not have the pinned sha256"
      exit 1
    fi
    tar xzf "$src/$crate.crate" -C "$src"
  done
  patch -d "$src" -p1 --quiet <"$PATCH"
  # Build tansu against the patched crates; its lock file otherwise stays as published.
  printf '\n[patch.crates-io]\ntansu-storage = { path = "../tansu-storage-%s" }\ntansu-broker = { path = "../tansu-broker-%s" }\n' \
    "$TANSU_VERSION" "$TANSU_VERSION" >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
  python3 - "$src/tansu-$TANSU_VERSION/Cargo.lock" <<'PY'
import re, sys
path = sys.argv[1]
text = open(path).read()
for name in ("tansu-storage", "tansu-broker"):
    text, n = re.subn(
        r'(name = "%s"\nversion = "[^"]+"\n)source = "[^"]+"\nchecksum = "[^"]+"\n' % name,
        r"\1", text)
    assert n == 1, name
open(path, "w").write(text)
PY
  mkdir -p "$ROOT"
  CARGO_TARGET_DIR="$src/target" cargo install --locked --force --path "$src/tansu-$TANSU_VERSION" \
    --features "$FEATURES" --root "$ROOT" >&2
  if [ ! -x "$BIN" ]; then
    log "cargo install finished but $BIN is missing"
    exit 1
  fi
  stamp >"$ROOT/stamp"
  rm -rf "$src"
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
