#!/usr/bin/env bash
# Soak: SECS seconds (default 3600) at RATE points/s (default 20000) over the
# ThingsBoard HTTP device API, with live WebSocket clients and MQTT
# subscribers connecting and disconnecting; samples RSS, open files and
# latency each minute and ends with the RSS slope (bench/soak.py).
#   bench/soak.sh [SECS] [RATE]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-3600}
rate=${2:-20000}
python3 -c 'import websockets, paho.mqtt, requests' 2>/dev/null ||
  python3 -m pip install --quiet websockets paho-mqtt requests
[ -n "${SOAK_BIN:-}" ] || cargo build --release -p tributary
bin=${SOAK_BIN:-target/release/tributary}
work=$(mktemp -d)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
http=$(free_port); mqtt=$(free_port)
TRIBUTARY_ADMIN_EMAIL=soak@example.com TRIBUTARY_ADMIN_PASSWORD=soak-password-123 \
  TRIBUTARY_ACCESS_TOKEN_TTL_SECS=$((secs + 3600)) \
  "$bin" serve --data-dir "$work/data" --http-listen "127.0.0.1:$http" \
  --mqtt-listen "127.0.0.1:$mqtt" --log warn >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$http/healthz" >/dev/null && break; sleep 0.1; done
token=$(curl -s "127.0.0.1:$http/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"soak@example.com","password":"soak-password-123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
python3 bench/soak.py --base "http://127.0.0.1:$http" --mqtt "127.0.0.1:$mqtt" --pid "$pid" \
  --token "$token" --secs "$secs" --rate "$rate"
! grep -i panick "$work/server.log"
