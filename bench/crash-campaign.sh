#!/usr/bin/env bash
# Crash campaign: CYCLES (default 100) rounds of mixed load and kill -9 at a
# random moment, each followed by a restart that must hold every
# acknowledged write (bench/crash_campaign.py). Exits non-zero on any loss.
#   bench/crash-campaign.sh [CYCLES] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -c 'import paho.mqtt, requests' 2>/dev/null || python3 -m pip install --quiet paho-mqtt requests
cargo build --release -p tributary
args=(--binary target/release/tributary --cycles "${1:-100}")
[ -n "${2:-}" ] && args+=(--seed "$2")
python3 bench/crash_campaign.py "${args[@]}"
