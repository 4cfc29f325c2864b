#!/usr/bin/env bash
# The benchmarks in one command: bench/run.sh [all|http|live|mqtt|mosquitto|tsdb] [seconds-per-round]
# BENCH_SERVER: the server binary to measure (default: the release build of
# this checkout), to compare two versions alternately; BENCH_TOOLS: a
# directory with prebuilt tributary and tributary-bench binaries (the load
# generators) instead of building this checkout; BENCH_NO_WS=1 skips the
# WebSocket ingest rounds (for a binary older than them).
# tsdb knobs: TSDB_RENDER_POINTS (points per write round), TSDB_WRITES_ONLY=1
# (the write rounds only), TSDB_QUERY_POINTS (points of the aggregate query).
# Starts a release Tributary (and InfluxDB 1.x when installed: apt-get install influxdb)
# on loopback with fresh data directories, runs the same load against both,
# prints the tables for docs/benchmarks.md and keeps them in bench/results/.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-all}
seconds=${2:-10}

if [ -n "${BENCH_TOOLS:-}" ]; then
  tools=$BENCH_TOOLS
else
  cargo build --release -q -p tributary -p tributary-bench
  tools=target/release
fi
bin=${BENCH_SERVER:-$tools/tributary}
echo "server: $bin"
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

password=bench-password-123
# A short seal interval so the disk figures are of sealed blocks within the run.
TRIBUTARY_ADMIN_EMAIL=bench@example.com TRIBUTARY_ADMIN_PASSWORD=$password TRIBUTARY_LIVE_MAX_CLIENTS_PER_TENANT=20000 \
  TRIBUTARY_TSDB_SEAL_INTERVAL_SECS=5 TRIBUTARY_HTTP_MAX_CONNECTIONS=50000 \
  TRIBUTARY_MAX_DEVICES_PER_TENANT=10000000 TRIBUTARY_MAX_AUTO_DEVICES_PER_REQUEST=1000000 \
  TRIBUTARY_MAX_AUTO_DEVICES_PER_MINUTE=100000000 \
  "$bin" serve --data-dir "$work/tributary" --http-listen 127.0.0.1:0 --mqtt-listen 127.0.0.1:0 \
  --log warn,tributary::serve=info >"$work/tributary.out" 2>"$work/tributary.log" &
pids+=($!)
for _ in $(seq 100); do
  addr=$(grep -o 'http listening addr=127.0.0.1:[0-9]*' "$work/tributary.log" | head -1 | cut -d= -f2 || true)
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { cat "$work/tributary.log"; exit 1; }
mqtt_addr=$(grep -o 'mqtt listening addr=127.0.0.1:[0-9]*' "$work/tributary.log" | head -1 | cut -d= -f2)

influx_args=()
if command -v influxd >/dev/null 2>&1; then
  http_port=$(free_port); rpc_port=$(free_port)
  cat >"$work/influxdb.conf" <<CONF
reporting-disabled = true
bind-address = "127.0.0.1:$rpc_port"
[meta]
  dir = "$work/influx/meta"
[data]
  dir = "$work/influx/data"
  wal-dir = "$work/influx/wal"
  wal-fsync-delay = "0s"
  cache-snapshot-write-cold-duration = "5s"
  query-log-enabled = false
[http]
  bind-address = "127.0.0.1:$http_port"
  log-enabled = false
[monitor]
  store-enabled = false
CONF
  influxd -config "$work/influxdb.conf" >"$work/influx.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$http_port/ping" >/dev/null && break
    sleep 0.1
  done
  influx_args=(--influx "http://127.0.0.1:$http_port")
  echo "peer: $(influxd version 2>/dev/null | head -1)"
else
  echo "influxd not installed: Tributary only (apt-get install influxdb for the peer)"
fi

mkdir -p bench/results
stamp=$(date -u +%Y%m%dT%H%M%SZ)
header() { echo "# $(date -u +%Y-%m-%dT%H:%MZ) on $(nproc) cores, $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"; echo; }
if [ "$which" = all ] || [ "$which" = http ]; then
  out="bench/results/http-ingest-$stamp.md"
  { header
    "$tools/tributary-bench" http-ingest --tributary "http://$addr" \
      --email bench@example.com --password "$password" --seconds "$seconds" \
      ${BENCH_NO_WS:+--no-ws} "${influx_args[@]}"
    echo
    echo "Tributary peak RSS so far: $(grep VmHWM /proc/"${pids[0]}"/status | awk '{print $2, $3}')"
  } | tee "$out"
  echo "saved to $out"
fi
if [ "$which" = all ] || [ "$which" = live ]; then
  out="bench/results/live-$stamp.md"
  { header
    "$tools/tributary-bench" live --tributary "http://$addr" --server-pid "${pids[0]}" \
      --email bench@example.com --password "$password" --seconds "$seconds"
  } | tee "$out"
  echo "saved to $out"
fi
if [ "$which" = all ] || [ "$which" = tsdb ]; then
  out="bench/results/tsdb-$stamp.md"
  influx_dir_args=()
  [ ${#influx_args[@]} -gt 0 ] && influx_dir_args=(--influx-dir "$work/influx/data" --influx-pid "${pids[1]}")
  { header
    "$tools/tributary-bench" tsdb --tributary "http://$addr" --tributary-pid "${pids[0]}" \
      --tributary-dir "$work/tributary/tsdb" --email bench@example.com --password "$password" \
      --seconds "$seconds" --query-points "${TSDB_QUERY_POINTS:-10000000}" \
      --render-points "${TSDB_RENDER_POINTS:-64000000}" ${TSDB_WRITES_ONLY:+--writes-only} \
      "${influx_args[@]}" "${influx_dir_args[@]}"
  } | tee "$out"
  echo "saved to $out"
fi
if [ "$which" = all ] || [ "$which" = mosquitto ]; then
  mosq_args=()
  if command -v mosquitto >/dev/null 2>&1; then
    mosq_port=$(free_port)
    cat >"$work/mosquitto.conf" <<CONF
listener $mosq_port 127.0.0.1
allow_anonymous true
persistence false
max_queued_messages 1000
log_dest none
CONF
    mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
    mosq_pid=$!
    pids+=("$mosq_pid")
    sleep 0.5
    mosq_args=(--mosquitto "127.0.0.1:$mosq_port" --mosquitto-pid "$mosq_pid")
    echo "peer: $(mosquitto -h 2>/dev/null | head -1)"
  else
    echo "mosquitto not installed: Tributary only (apt-get install mosquitto for the peer)"
  fi
  out="bench/results/mqtt-mosquitto-$stamp.md"
  { header
    "$tools/tributary-bench" mqtt --tributary "http://$addr" --tributary-mqtt "$mqtt_addr" \
      --tributary-pid "${pids[0]}" --email bench@example.com --password "$password" \
      --seconds "$seconds" --idle "${MQTT_IDLE:-19000}" "${mosq_args[@]}"
  } | tee "$out"
  echo "saved to $out"
fi
if [ "$which" = all ] || [ "$which" = mqtt ]; then
  out="bench/results/mqtt-live-$stamp.md"
  { header
    echo "## MQTT publish (QoS 1) → WebSocket latency, measured by tributary simulate --latency"
    echo
    echo "| points/s | points/message | acked points/s | p50 ms | p99 ms | p99.9 ms | max ms | messages matched |"
    echo "|---|---|---|---|---|---|---|---|"
    for rate in 1000 10000 50000 100000; do
      batch=$(( rate / 1000 )); [ "$batch" -lt 1 ] && batch=1
      cat >"$work/mqtt-$rate.toml" <<TOML
seed = 1
[fleet]
count = 10
name = "mqtt-bench-$rate-{i}"
[rate]
points_per_sec = $rate
batch = $batch
duration_secs = $seconds
[[keys]]
name = "v"
signal = "sine"
offset = 0.0
amplitude = 10.0
period_secs = 30.0
decimals = 3
TOML
      "$tools/tributary" simulate --scenario "$work/mqtt-$rate.toml" --protocol mqtt --qos 1 \
        --target "http://$addr" --mqtt "$mqtt_addr" --email bench@example.com --password "$password" \
        --latency --json --quiet >"$work/mqtt-$rate.json"
      jq -r --arg rate "$rate" --arg batch "$batch" \
        '"| \($rate) | \($batch) | \(.points_per_sec|floor) | \(.latency_ms.p50*100|round/100) | \(.latency_ms.p99*100|round/100) | \(.latency_ms.p999*100|round/100) | \(.latency_ms.max*100|round/100) | \(.latency_ms.samples) |"' \
        "$work/mqtt-$rate.json"
    done
  } | tee "$out"
  echo "saved to $out"
fi
