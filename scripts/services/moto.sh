#!/usr/bin/env bash
# moto (a local AWS API emulator) for the AWS revocation executor's test (sinks/tests/aws_moto.rs).
#
#   scripts/services/moto.sh install     install (idempotent) and print the `moto_server` path
#   scripts/services/moto.sh start DIR   start a server on a free 127.0.0.1 port;
#                                        prints `export AWS_ENDPOINT_URL=…` and dummy credentials
#   scripts/services/moto.sh stop DIR    stop the server started in DIR
#
# `moto[server]` comes from PyPI, pinned below, in a venv under ~/.cache/lineage/venv-moto
# that is reused when it already holds the pinned version. The test starts its own server
# from the path `install` prints (export it as LINEAGE_MOTO_SERVER); `start`/`stop` are for
# poking at a server by hand. Everything listens on 127.0.0.1 only.
set -euo pipefail
# shellcheck source=scripts/services/common.sh
source "$(dirname "$0")/common.sh"

MOTO_VERSION="5.2.5"
CACHE="${LINEAGE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lineage}"
VENV="$CACHE/venv-moto"

log() { echo "moto.sh: $*" >&2; }

installed_version() {
  "$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null || true
}

# `moto[server]` pulls in flask/flask-cors; check they import, not just that moto is there.
server_importable() {
  "$VENV/bin/python" -c 'import moto.server, flask, flask_cors' >/dev/null 2>&1
}

install() {
  local bin="$VENV/bin/moto_server"
  if [ -x "$VENV/bin/python" ] && [ "$(installed_version)" = "$MOTO_VERSION" ] && [ -x "$bin" ] && server_importable; then
    echo "$bin"
    return 0
  fi
  local py
  py=$(command -v python3 || true)
  if [ -z "$py" ]; then
    log "python3 not found: it is needed to install moto[server] from PyPI"
    exit 1
  fi
  log "installing moto[server]==$MOTO_VERSION into $VENV"
  mkdir -p "$CACHE"
  rm -rf "$VENV"
  "$py" -m venv "$VENV"
  "$VENV/bin/pip" install --disable-pip-version-check --quiet "moto[server]==$MOTO_VERSION" >&2
  if [ ! -x "$bin" ] || ! server_importable; then
    log "the installed moto_server does not load: $bin"
    exit 1
  fi
  echo "$bin"
}


start() {
  local dir="${1:?usage: moto.sh start DIR}"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local bin port
  bin=$(install)
  port=$(free_port)
  nohup "$bin" -H 127.0.0.1 -p "$port" >"$dir/server.log" 2>&1 &
  echo $! >"$dir/pid"
  printf 'export AWS_ENDPOINT_URL=http://127.0.0.1:%s\nexport AWS_ACCESS_KEY_ID=testing\nexport AWS_SECRET_ACCESS_KEY=testing\nexport AWS_REGION=us-east-1\n' \
    "$port" >"$dir/env"
  local i
  for i in $(seq 1 300); do
    if ! kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      log "the server exited; see $dir/server.log"
      tail -20 "$dir/server.log" >&2
      exit 1
    fi
    if "$VENV/bin/python" -c "import urllib.request as u; u.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" >/dev/null 2>&1; then
      cat "$dir/env"
      return 0
    fi
    sleep 0.2
  done
  log "no server answering on 127.0.0.1:$port after 60 s; see $dir/server.log"
  stop "$dir"
  exit 1
}


dispatch "$@"
