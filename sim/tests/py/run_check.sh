#!/bin/bash
# Builds and starts a simulator, runs a real client's checks against it, stops it:
#   sim/tests/py/run_check.sh openstack   check_sdk.py through openstacksdk
#   sim/tests/py/run_check.sh proxmox     check_proxmoxer.py through proxmoxer
# PYTHON: a python with the client installed (default python3). Exits non-zero on the first
# disagreement, or when the simulator does not come up within 30 s.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
PYTHON=${PYTHON:-python3}
WHICH=${1:?usage: $0 openstack|proxmox}
WORK=$(mktemp -d)
SIM_PID=
trap '[ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; rm -rf "$WORK"' EXIT
wait_for_file() { # FILE PATTERN: up to 30 s
  for _ in $(seq 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "the simulator did not come up:" >&2; cat "$WORK/serve.log" >&2; return 1
}
case "$WHICH" in
  openstack)
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p cloud-janitor-sim --example serve_openstack
    "$ROOT/target/debug/examples/serve_openstack" 127.0.0.1:0 "$WORK/clouds.yaml" > "$WORK/serve.log" 2>&1 &
    SIM_PID=$!
    wait_for_file "$WORK/clouds.yaml" clouds
    OS_CLIENT_CONFIG_FILE="$WORK/clouds.yaml" timeout 300 "$PYTHON" "$ROOT/sim/tests/py/check_sdk.py"
    ;;
  proxmox)
    cargo build --quiet --manifest-path "$ROOT/Cargo.toml" -p cloud-janitor-sim --example serve_proxmox
    "$ROOT/target/debug/examples/serve_proxmox" 127.0.0.1:0 > "$WORK/serve.log" 2>&1 &
    SIM_PID=$!
    wait_for_file "$WORK/serve.log" '^READY'
    set -a
    # shellcheck disable=SC1090
    . <(grep '^PROXMOX_' "$WORK/serve.log")
    set +a
    HOST=${PROXMOX_URL#https://}
    timeout 300 "$PYTHON" "$ROOT/sim/tests/py/check_proxmoxer.py" "${HOST%%/*}"
    ;;
  *) echo "usage: $0 openstack|proxmox" >&2; exit 64 ;;
esac
