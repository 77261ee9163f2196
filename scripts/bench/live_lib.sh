# Shared by the live-path benchmark scripts (bench_kafka.sh, bench_embedded.sh,
# bench_restart.sh); sourced, not run. Sets `work` (a temporary directory removed at
# exit with every process whose pid is appended to `pids`) and defines helpers that
# read the /metrics of the `lineage run` listening on `$mport`.
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# A free 127.0.0.1 port, never one handed out before in this run (a port is free
# until its process binds it, so two calls in a row could otherwise return the same
# one: a broker and the metrics endpoint once collided).
free_port() {
  local p
  while :; do
    p=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    grep -qx "$p" "$work/ports" 2>/dev/null || break
  done
  echo "$p" >>"$work/ports"
  echo "$p"
}

# Events graph/detect has processed (live outputs, not a state rebuild).
graph_out() {
  curl -s "http://127.0.0.1:$mport/metrics" | awk 'index($0,"lineage_events_total{stage=\"graph\"") && index($0,"outcome=\"out\"") {t+=$NF} END {print t+0}'
}

# p50 | p99 of lineage_processing_latency_seconds, interpolated within its buckets;
# with a file written by latency_baseline, of what was observed since then only.
percentiles() {
  curl -s "http://127.0.0.1:$mport/metrics" | python3 -c '
import sys,re
def load(lines):
    b=[]
    for l in lines:
        m=re.match(r"lineage_processing_latency_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)",l)
        if m: b.append((float("inf") if m.group(1)=="+Inf" else float(m.group(1)),int(m.group(2))))
    return b
b=load(sys.stdin)
if len(sys.argv) > 1:
    base=dict(load(open(sys.argv[1])))
    b=[(le,c-base.get(le,0)) for le,c in b]
total=b[-1][1]
def q(p):
    t=p*total; lo=0.0; prev=0
    for le,c in b:
        if c>=t:
            if le==float("inf"): return lo
            return lo+(le-lo)*((t-prev)/max(c-prev,1))
        lo,prev=le,c
print("%.0f ms | %.0f ms" % (q(0.5)*1000,q(0.99)*1000))' "$@"
}

# Saves the latency histogram now to $1, for `percentiles $1`.
latency_baseline() {
  curl -s "http://127.0.0.1:$mport/metrics" | grep '^lineage_processing_latency_seconds_bucket' >"$1"
}

# Offers one CloudTrail record and waits until graph/detect has processed it: the
# pipeline has joined its groups and has its partitions (on tansu, static-membership
# joins take seconds). Arguments: the lineage binary, the broker address.
warm_up() {
  python3 - "$work/probe.json" <<'PY'
import json, sys
rec = {"eventVersion": "1.08", "eventID": "warm-up-probe-1", "eventTime": "2020-01-01T00:00:00Z",
       "eventSource": "sts.amazonaws.com", "eventName": "GetCallerIdentity", "awsRegion": "us-east-1",
       "userIdentity": {"type": "IAMUser", "accessKeyId": "AKIAWARMUPPROBE00001", "userName": "probe",
                        "accountId": "111122223333"}}
json.dump({"Records": [rec]}, open(sys.argv[1], "w"))
PY
  "$1" ingest auto --to kafka --brokers "$2" --from "$work/probe.json" >/dev/null
  for _ in $(seq 1200); do [ "$(graph_out)" -ge 1 ] && return; sleep 0.05; done
  echo "warm-up probe not processed in 60 s" >&2; exit 1
}
