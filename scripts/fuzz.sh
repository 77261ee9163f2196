#!/usr/bin/env bash
# Runs every cargo-fuzz target for FUZZ_SECONDS (default 600) each, one after the
# other, with corpora seeded from testdata/. Needs the nightly toolchain and
# cargo-fuzz (installed here when missing). Prints one result line per target.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-600}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
seed() { # seed TARGET FILES...
  local dir="fuzz/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -n "$f" "$dir/" || true; done
}
seed cloudtrail testdata/cloudtrail/golden/*.input.json
seed entra testdata/entra/golden/*.input.json*
seed github testdata/github/golden/*.input.json* testdata/github/azure-sentinel/*.json
seed vault testdata/vault/golden/*.input*
head -c 60000 testdata/vault/openbao_session.log > fuzz/corpus/vault/session.log
seed framing fuzz/corpus/{cloudtrail,entra,github,vault}/*
for t in cloudtrail entra github vault framing; do
  log="fuzz/$t.last-run.log"
  if cargo +nightly fuzz run "$t" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 >"$log" 2>&1; then
    echo "$t: ok, $(grep -Eo '#[0-9]+' "$log" | tail -1 | tr -d '#') runs in ${secs}s, corpus $(ls "fuzz/corpus/$t" | wc -l) inputs"
  else
    echo "$t: FAILED (see $log and fuzz/artifacts/$t/)"; exit 1
  fi
done
