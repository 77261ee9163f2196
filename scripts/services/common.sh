# Shared by the service scripts (sourced, not run): a free loopback port, stopping
# a server started in DIR, and the install | start DIR | stop DIR dispatch.

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

stop() {
  local dir="${1:?usage: $(basename "$0") stop DIR}"
  if [ -f "$dir/pid" ]; then
    local pid
    pid=$(cat "$dir/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    rm -f "$dir/pid"
  fi
}

dispatch() {
  case "${1:-}" in
    install) install ;;
    start) start "${2:-}" ;;
    stop) stop "${2:-}" ;;
    *)
      echo "usage: $0 install | start DIR | stop DIR" >&2
      exit 2
      ;;
  esac
}
