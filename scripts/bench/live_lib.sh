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

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Events graph/detect has processed (live outputs, not a state rebuild).
graph_out() {
  curl -s "http://127.0.0.1:$mport/metrics" | awk 'index($0,"lineage_events_total{stage=\"graph\"") && index($0,"outcome=\"out\"") {t+=$NF} END {print t+0}'
}

# p50 | p99 of lineage_processing_latency_seconds, interpolated within its buckets.
percentiles() {
  curl -s "http://127.0.0.1:$mport/metrics" | python3 -c '
import sys,re
b=[]
for l in sys.stdin:
    m=re.match(r"lineage_processing_latency_seconds_bucket\{le=\"([^\"]+)\"\} (\d+)",l)
    if m: b.append((float("inf") if m.group(1)=="+Inf" else float(m.group(1)),int(m.group(2))))
total=b[-1][1]
def q(p):
    t=p*total; lo=0.0; prev=0
    for le,c in b:
        if c>=t:
            if le==float("inf"): return lo
            return lo+(le-lo)*((t-prev)/max(c-prev,1))
        lo,prev=le,c
print("%.0f ms | %.0f ms" % (q(0.5)*1000,q(0.99)*1000))'
}
