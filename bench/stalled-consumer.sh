#!/usr/bin/env bash
# A consumer that stops: the `export` consumer writes to a 1 MiB tmpfs that
# fills at once (ENOSPC on every retry), while 8 writers send telemetry as
# fast as they are acknowledged. Samples RSS, the log's retained bytes, its
# back-pressure and the acknowledged rate each second; after STALL seconds
# the tmpfs is grown, the consumer catches up, and ingestion resumes.
#   bench/stalled-consumer.sh [STALL_SECS] [BUDGET_MIB]   (needs root for mount)
set -euo pipefail
cd "$(dirname "$0")/.."
stall=${1:-60}
budget_mib=${2:-128}
python3 -c 'import requests' 2>/dev/null || python3 -m pip install --quiet requests
[ -n "${BENCH_SERVER:-}" ] || cargo build --release -q -p tributary
bin=${BENCH_SERVER:-target/release/tributary}
work=$(mktemp -d)
mkdir "$work/full"
mount -t tmpfs -o size=1m tmpfs "$work/full"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); mqtt=$(free_port)
TRIBUTARY_ADMIN_EMAIL=stall@example.com TRIBUTARY_ADMIN_PASSWORD=stall-password-123 \
  TRIBUTARY_LOG_EXPORT_PATH="$work/full/export.jsonl" \
  TRIBUTARY_WAL_SEGMENT_BYTES=$((budget_mib * 1024 * 1024 / 8)) \
  TRIBUTARY_WAL_MAX_RETAINED_BYTES=$((budget_mib * 1024 * 1024)) \
  "$bin" serve --data-dir "$work/data" --http-listen "127.0.0.1:$http" \
  --mqtt-listen "127.0.0.1:$mqtt" --log warn >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; umount "$work/full" 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
python3 bench/stalled_consumer.py --base "http://127.0.0.1:$http" --pid "$pid" --stall "$stall" \
  --budget-mib "$budget_mib" --grow "mount -o remount,size=4g $work/full"
! grep -i panick "$work/server.log"
