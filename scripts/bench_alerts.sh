#!/usr/bin/env bash
# Alert-precision benchmark (not a test), two parts:
#
# 1. The simulator at about a million events, clean and with benign noise
#    (`lineage demo --noise`: hosted CI runners, serverless egress, pods, office NAT,
#    a travelling developer, a deployment day): alerts per million events, alerts
#    from benign activity, recall per detector.
# 2. The many-addresses case: the same CloudTrail replayed twice, once as simulated
#    (each agent on one address) and once with every record's address moved to a
#    fresh /24; wall time, peak RSS, alerts, and the most alerts one credential and
#    rule got within one suppression window (one day).
#
#   scripts/bench_alerts.sh [--agents 120] [--days 10] [--calls 800] [--fresh-agents 60] [--fresh-days 7] [--fresh-calls 1100]
set -euo pipefail
cd "$(dirname "$0")/.."
agents=120 days=10 calls=800 fagents=60 fdays=7 fcalls=1100
while [ $# -gt 0 ]; do
  case "$1" in
    --agents) agents=$2; shift 2 ;;
    --days) days=$2; shift 2 ;;
    --calls) calls=$2; shift 2 ;;
    --fresh-agents) fagents=$2; shift 2 ;;
    --fresh-days) fdays=$2; shift 2 ;;
    --fresh-calls) fcalls=$2; shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 1 ;;
  esac
done
cargo build --release --workspace --quiet
bin="${CARGO_TARGET_DIR:-./target}/release/lineage"
source scripts/bench/live_lib.sh

echo "## Simulated estate, $agents agents × $days days × $calls calls a day"
echo
echo "| run | events | replay (all cores, no tables) | alerts | per million events | from benign activity | recall | detectors (raised/expected) |"
echo "|---|---|---|---|---|---|---|---|"
for mode in clean noise; do
  flag=(); [ "$mode" = noise ] && flag=(--noise)
  out=$("$bin" demo "${flag[@]}" --agents "$agents" --days "$days" --calls-per-agent-day "$calls" \
    --keep "$work/demo-$mode" --show-alerts 0 2>/dev/null || true)
  sim="$work/demo-$mode/sim"
  python3 scripts/bench/peak_rss.py --json "$work/replay-$mode.json" --label "replay $mode" -- \
    "$bin" replay "$sim/AWSLogs" "$sim/Entra" "$sim/GitHub" "$sim/Vault" --inventory "$sim/inventory.toml" \
    --out "$work/replay-$mode" --no-tables --progress none --show-alerts 0 2>/dev/null
  python3 - "$work/demo-$mode/score.json" "$mode" "$out" "$work/replay-$mode.json" "$work/replay-$mode/summary.json" <<'PY'
import json, re, sys
score = json.load(open(sys.argv[1])); mode = sys.argv[2]; out = sys.argv[3]
run = json.load(open(sys.argv[4])); summary = json.load(open(sys.argv[5]))
m = re.search(r"alerts: (\d+) for (\d+) events \((\d+) per million\); (\d+) from benign", out)
alerts, events, per_m, benign = m.groups()
det = ", ".join(f"{d['detector']} {d['raised']}/{d['expected']}" for d in score["detectors"])
found = sum(d["found"] for d in score["detectors"]); exp = sum(d["expected"] for d in score["detectors"])
rate = summary["normalized"] / run["secs"]
print(f"| {mode} | {int(events):,} | {run['secs']:.1f} s, {rate:,.0f} events/s, peak {run['peak_rss_kb'] / 1024:.0f} MiB | "
      f"{alerts} | {per_m} | {benign} | {found}/{exp} | {det} |")
PY
done
echo

echo "## Many addresses: every CloudTrail record from a fresh /24"
echo
"$bin" simulate --out "$work/fresh-sim" --agents "$fagents" --days "$fdays" --calls-per-agent-day "$fcalls" >/dev/null
cp -r "$work/fresh-sim/AWSLogs" "$work/stable"
python3 - "$work/fresh-sim/AWSLogs" "$work/fresh" <<'PY'
import gzip, json, os, sys
src, dst = sys.argv[1], sys.argv[2]
n = 0
for root, _, files in os.walk(src):
    for f in files:
        if not f.endswith(".json.gz"):
            continue
        doc = json.load(gzip.open(os.path.join(root, f)))
        for r in doc.get("Records", []):
            ip = r.get("sourceIPAddress", "")
            if ip and ip[0].isdigit():
                n += 1
                r["sourceIPAddress"] = f"{(n >> 16) % 200 + 11}.{(n >> 8) & 255}.{n & 255}.7"
        out = os.path.join(dst, os.path.relpath(root, src))
        os.makedirs(out, exist_ok=True)
        with gzip.open(os.path.join(out, f), "wt") as g:
            json.dump(doc, g)
print(f"{n} records moved to a fresh /24 each", file=sys.stderr)
PY
echo "| addresses | events | wall | peak RSS | alerts | anomaly alerts | most alerts of one credential and rule in a day |"
echo "|---|---|---|---|---|---|---|"
for variant in stable fresh; do
  python3 scripts/bench/peak_rss.py --json "$work/$variant.json" --label "$variant" -- \
    "$bin" replay "$work/$variant" --inventory "$work/fresh-sim/inventory.toml" \
    --out "$work/out-$variant" --no-tables --progress none --show-alerts 0 2>/dev/null
  python3 - "$work/$variant.json" "$work/out-$variant" "$variant" <<'PY'
import collections, json, sys
from datetime import datetime
run = json.load(open(sys.argv[1])); out = sys.argv[2]; variant = sys.argv[3]
summary = json.load(open(out + "/summary.json"))
alerts = [json.loads(l) for l in open(out + "/alerts.jsonl")]
per = collections.Counter()
for a in alerts:
    rule = (a.get("evidence") or {}).get("rule", "")
    cred = a.get("root_credential") or (a.get("credential") or {}).get("id")
    day = datetime.fromisoformat(a["first_seen"].replace("Z", "+00:00")).date()
    per[(a["detector"], rule, cred, day)] += 1
anomaly = sum(1 for a in alerts if a["detector"] == "anomaly")
print(f"| {variant} | {summary['normalized']:,} | {run['secs']:.1f} s | {run['peak_rss_kb'] / 1024:.0f} MiB | "
      f"{len(alerts)} | {anomaly} | {max(per.values()) if per else 0} |")
PY
done
echo
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $(date -u +%Y-%m-%dT%H:%MZ); commit $(git rev-parse --short HEAD)"
