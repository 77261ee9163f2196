#!/usr/bin/env python3
"""Soak-test record generator (not a test): writes CloudTrail delivery files into a
directory at a fixed rate for a fixed time, forever new.

It loops over the simulator's CloudTrail records in event-time order. Each lap
shifts every event time by the span of the data, gives every event a new id, and
gives every session key (`ASIA…`) a new id, so each lap is new history: the graph
learns new session credentials and, with `[graph] retain_days` short, forgets the
old laps' ones while the run goes on (the point of a soak: memory must stay flat).

One file per second (`soak-<n>.json`, written under a temporary name and renamed
into place, so a directory follower reads it at once); files older than a minute
are deleted, so the disk does not fill.

    soak_gen.py SIM_AWSLOGS_DIR OUT_DIR RATE SECONDS
"""

import datetime
import glob
import gzip
import json
import os
import sys
import time

src, out, rate, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
records = []
for path in glob.glob(os.path.join(src, "**", "*.json.gz"), recursive=True):
    with gzip.open(path, "rt") as f:
        records.extend(json.load(f)["Records"])
records.sort(key=lambda r: r["eventTime"])
if not records:
    sys.exit(f"no CloudTrail records under {src}")
fmt = "%Y-%m-%dT%H:%M:%SZ"
times = [datetime.datetime.strptime(r["eventTime"], fmt) for r in records]
span = times[-1] - times[0] + datetime.timedelta(seconds=1)


def renamed(key, lap):
    """A session key id for this lap, the same length."""
    if not isinstance(key, str) or not key.startswith("ASIA") or lap == 0:
        return key
    tag = format(lap, "X")
    return key[: len(key) - len(tag)] + tag


def lap_record(i, lap):
    r = json.loads(json.dumps(records[i]))
    r["eventTime"] = (times[i] + lap * span).strftime(fmt)
    r["eventID"] = f"{r['eventID']}-{lap}"
    ui = r.get("userIdentity") or {}
    if "accessKeyId" in ui:
        ui["accessKeyId"] = renamed(ui["accessKeyId"], lap)
    creds = (r.get("responseElements") or {}).get("credentials")
    if isinstance(creds, dict) and "accessKeyId" in creds:
        creds["accessKeyId"] = renamed(creds["accessKeyId"], lap)
    return r


os.makedirs(out, exist_ok=True)
start = time.monotonic()
n = 0
written = []
for second in range(seconds):
    batch = []
    for _ in range(rate):
        lap, i = divmod(n, len(records))
        batch.append(lap_record(i, lap))
        n += 1
    name = os.path.join(out, f"soak-{second:06d}.json")
    with open(name + ".tmp", "w") as f:
        json.dump({"Records": batch}, f)
    os.rename(name + ".tmp", name)
    written.append(name)
    while len(written) > 60:
        try:
            os.remove(written.pop(0))
        except FileNotFoundError:
            pass
    time.sleep(max(0.0, start + second + 1 - time.monotonic()))
print(n)
