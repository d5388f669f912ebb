#!/bin/bash
# `openstack project cleanup --auto-approve --auth-project` (python-openstackclient, pinned in
# tests/e2e/osc-requirements.txt) against the simulator seeded with CI jobs: it must exit 0, leave
# none of the jobs' servers, volumes, routers, floating IPs or networks, and ask nothing the
# simulator does not serve. Works on a fresh Debian 12 machine with root and a Rust toolchain.
# Environment: JANITOR_BIN (default: built here), OSC_JOBS (default 5).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/tests/e2e/.venv-osc
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"
WORK=$(mktemp -d)
SIM_PID=
on_exit() {
  local rc=$?
  [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null || true
  print_timings
  exit $rc
}
trap on_exit EXIT

install_client() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/e2e/osc-requirements.txt"
}

start_simulator() {
  "$JANITOR_BIN" simulate --listen 127.0.0.1:0 --jobs "${OSC_JOBS:-5}" --clouds-yaml "$WORK/clouds.yaml" \
    --request-log "$WORK/requests.log" > "$WORK/simulator.out" 2>&1 &
  SIM_PID=$!
  for _ in $(seq 100); do [ -f "$WORK/clouds.yaml" ] && return 0; sleep 0.1; done
  echo "the simulator wrote no clouds.yaml:"; cat "$WORK/simulator.out"; return 1
}

openstack() { OS_CLIENT_CONFIG_FILE="$WORK/clouds.yaml" "$VENV/bin/openstack" --os-cloud sim "$@"; }

cleanup() { openstack project cleanup --auto-approve --auth-project; }

# What the jobs made that project cleanup removes. (It leaves keypairs, which belong to the user,
# and security groups whose ports it had not deleted yet: the benchmark's table shows both.)
nothing_left() {
  local kind left status=0
  for kind in server volume router "floating ip" network subnet; do
    # shellcheck disable=SC2086
    left=$(openstack $kind list --project demo -f value -c Name 2>/dev/null | grep -c '^ci-job-' || true)
    [ "$kind" = "floating ip" ] && left=$(openstack floating ip list -f value -c ID | wc -l)
    echo "    $kind: $left left"
    [ "$left" = 0 ] || status=1
  done
  return $status
}

nothing_unserved() {
  kill -INT "$SIM_PID"; wait "$SIM_PID" || true; SIM_PID=
  echo "    $(wc -l < "$WORK/requests.log") requests served"
  if grep ' unserved$' "$WORK/requests.log"; then
    echo "requests the simulator does not serve (above)"; return 1
  fi
}

phase "system packages" install_python_venv
phase "openstackclient venv (pip)" install_client
phase "cargo build" build_janitor
phase "simulator up" start_simulator
phase "openstack project cleanup" cleanup
phase "nothing left" nothing_left
phase "nothing unserved" nothing_unserved
