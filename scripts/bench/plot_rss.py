#!/usr/bin/env python3
"""Plots a soak run's CSV (scripts/bench_soak.sh): resident memory of `lineage run`
(and of the broker) against time, with events processed on a second axis.

    plot_rss.py CSV PNG MODE RATE
"""

import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

path, png, mode, rate = sys.argv[1:5]
rows = list(csv.DictReader(open(path)))
minutes = [int(r["seconds"]) / 60 for r in rows]
fig, ax = plt.subplots(figsize=(8, 4.5))
ax.plot(minutes, [int(r["lineage_rss_kib"]) / 1024 for r in rows], label="lineage run RSS (MiB)")
if any(int(r["broker_rss_kib"]) for r in rows):
    ax.plot(minutes, [int(r["broker_rss_kib"]) / 1024 for r in rows], label="tansu broker RSS (MiB)")
ax.set_xlabel("minutes")
ax.set_ylabel("MiB")
ax.set_ylim(bottom=0)
ax2 = ax.twinx()
ax2.plot(minutes, [int(r["events_processed"]) / 1e6 for r in rows], color="grey", linestyle=":",
         label="events processed (millions)")
ax2.set_ylabel("events processed (millions)")
ax2.set_ylim(bottom=0)
lines = ax.get_lines() + ax2.get_lines()
ax.legend(lines, [l.get_label() for l in lines], loc="upper left")
ax.set_title(f"lineage soak: {mode} bus, {rate} events/s offered, sampled every 10 s")
fig.tight_layout()
fig.savefig(png, dpi=100)
