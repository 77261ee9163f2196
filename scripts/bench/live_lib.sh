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

# Writes a delivery file of one CloudTrail record by the key's IAM user "probe".
# Arguments: the file, the event id, the event time, the access key id, the event
# source and the event name.
probe_record() {
  python3 - "$@" <<'PY'
import json, sys
path, event_id, time, key, source, name = sys.argv[1:7]
rec = {"eventVersion": "1.08", "eventID": event_id, "eventTime": time,
       "eventSource": source, "eventName": name, "awsRegion": "us-east-1",
       "userIdentity": {"type": "IAMUser", "accessKeyId": key, "userName": "probe",
                        "accountId": "111122223333"}}
json.dump({"Records": [rec]}, open(path, "w"))
PY
}

# Ingests a file into Kafka and waits until graph/detect has processed at least one
# event. Arguments: the lineage binary, the broker address, the file, the most
# seconds to wait. Fails when it waited them all.
offer_and_wait() {
  "$1" ingest auto --to kafka --brokers "$2" --from "$3" >/dev/null
  local _
  for _ in $(seq $(($4 * 20))); do [ "$(graph_out)" -ge 1 ] && return 0; sleep 0.05; done
  return 1
}

# Waits until graph/detect has processed something and then nothing new for 3 s.
# Sets `last` (events processed) and `t1` (when that count last changed).
wait_caught_up() {
  local g same=0
  last=-1
  while [ $same -lt 30 ]; do
    g=$(graph_out)
    if [ "$g" != "$last" ] || [ "$g" = 0 ]; then last=$g; same=0; t1=$(date +%s.%N); else same=$((same + 1)); fi
    sleep 0.1
  done
}

# One value of the /metrics of `lineage run` (a metric without labels).
metric_value() {
  curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1 " 'index($0,n)==1 {print $NF}'
}

# Offers one CloudTrail record and waits until graph/detect has processed it: the
# pipeline has joined its groups and has its partitions (on tansu, static-membership
# joins take seconds). Arguments: the lineage binary, the broker address.
warm_up() {
  probe_record "$work/probe.json" warm-up-probe-1 2020-01-01T00:00:00Z AKIAWARMUPPROBE00001 \
    sts.amazonaws.com GetCallerIdentity
  offer_and_wait "$1" "$2" "$work/probe.json" 60 && return
  echo "warm-up probe not processed in 60 s" >&2; exit 1
}
