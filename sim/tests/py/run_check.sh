#!/bin/bash
# Builds and starts the simulated OpenStack, runs check_sdk.py against it with openstacksdk, stops it.
# Usage: sim/tests/py/run_check.sh  (PYTHON= a python with `pip install openstacksdk`; default python3)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PYTHON=${PYTHON:-python3}
WORK=$(mktemp -d)
cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p cloud-janitor-sim --example serve_openstack
"$ROOT/target/debug/examples/serve_openstack" 127.0.0.1:0 "$WORK/clouds.yaml" > "$WORK/serve.log" 2>&1 &
SIM_PID=$!
trap 'kill "$SIM_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do [ -s "$WORK/clouds.yaml" ] && break; sleep 0.1; done
[ -s "$WORK/clouds.yaml" ] || { cat "$WORK/serve.log"; exit 1; }
OS_CLIENT_CONFIG_FILE="$WORK/clouds.yaml" "$PYTHON" "$ROOT/sim/tests/py/check_sdk.py"
