#!/usr/bin/env bash
# Fuzzes every decoder of outside input for SECONDS each (default 60) with
# libFuzzer (cargo fuzz, nightly), growing fuzz/corpus; see fuzz/README.md.
#   bench/fuzz.sh [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-60}
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
for t in $(cargo +nightly fuzz list); do
  echo "== $t (${secs}s)"
  cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=2048 2>&1 | tail -3
done
