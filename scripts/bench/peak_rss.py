#!/usr/bin/env python3
"""Runs a command and reports its wall time and peak resident memory (the kernel's
ru_maxrss of the child, the same figure as `/usr/bin/time -v`'s "Maximum resident set
size").

    peak_rss.py --json OUT [--label TEXT] -- COMMAND ARGS...
"""
import json
import os
import subprocess
import sys
import time


def main():
    argv = sys.argv[1:]
    if "--" not in argv:
        sys.exit("usage: peak_rss.py --json OUT [--label TEXT] -- COMMAND ...")
    opts, cmd = argv[: argv.index("--")], argv[argv.index("--") + 1:]
    out = opts[opts.index("--json") + 1] if "--json" in opts else None
    label = opts[opts.index("--label") + 1] if "--label" in opts else " ".join(cmd)
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    secs = time.perf_counter() - t0
    code = os.waitstatus_to_exitcode(status)
    doc = {"label": label, "command": cmd, "exit": code, "secs": secs,
           "peak_rss_kb": usage.ru_maxrss, "user_secs": usage.ru_utime, "sys_secs": usage.ru_stime}
    print(f"{label}: {secs:.2f}s wall, peak RSS {usage.ru_maxrss / 1024:.1f} MiB (exit {code})",
          file=sys.stderr)
    if out:
        with open(out, "w") as f:
            json.dump(doc, f, indent=2)
    sys.exit(code)


if __name__ == "__main__":
    main()
