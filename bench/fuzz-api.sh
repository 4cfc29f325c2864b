#!/usr/bin/env bash
# Fuzzes the HTTP API against its OpenAPI document for longer than the test
# suite does (tests/e2e/contract.rs): schemathesis with every check, a fresh
# seed each run, EXAMPLES generated requests per operation (default 500).
#   bench/fuzz-api.sh [EXAMPLES]
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-500}
command -v schemathesis >/dev/null || python3 -m pip install --quiet schemathesis
cargo build --release -p tributary
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
TRIBUTARY_ADMIN_EMAIL=fuzz@example.com TRIBUTARY_ADMIN_PASSWORD=fuzz-password-123 \
  target/release/tributary serve --data-dir "$work/data" --http-listen "127.0.0.1:$port" \
  --mqtt-listen 127.0.0.1:0 --log warn >"$work/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do curl -sf "127.0.0.1:$port/healthz" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
token=$(curl -s "$base/api/v1/auth/login" -H 'content-type: application/json' \
  -d '{"email":"fuzz@example.com","password":"fuzz-password-123"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
DEVICE_TOKEN=$(curl -s "$base/api/v1/devices" -H "authorization: Bearer $token" -H 'content-type: application/json' \
  -d '{"name":"fuzzed"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
export DEVICE_TOKEN
dir=crates/tributary/tests/e2e/schemathesis
seed=${SEED:-$RANDOM}
echo "seed $seed, $examples examples per operation"
(cd "$dir" && SCHEMATHESIS_HOOKS=hooks PYTHONPATH=. schemathesis --config-file schemathesis.toml run \
  "$base/api/openapi.json" -H "Authorization: Bearer $token" --max-examples "$examples" --workers 2 \
  --seed "$seed" --exclude-path /api/v1/tenant --exclude-path /api/v1/auth/logout --no-color)
# Any panic or 5xx would also be in the server's log.
! grep -i panick "$work/server.log"
