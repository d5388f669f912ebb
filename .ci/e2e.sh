#!/bin/bash
# End-to-end tests of cloud-janitor (tests/e2e), through openstacksdk, against:
#   .ci/e2e.sh sim  [PYTEST_ARGS...]   the simulator (`cloud-janitor simulate`), started by the tests
#   .ci/e2e.sh real [PYTEST_ARGS...]   a real Keystone/Neutron/Nova/Cinder brought up by
#                                      tests/real-openstack/up.sh, stopped again afterwards
#   .ci/e2e.sh all  [PYTEST_ARGS...]   both, sim first
# Works on a fresh Debian 12 machine with root and a Rust toolchain: installs what it needs.
# Environment: JANITOR_BIN (default: built here, target/debug/cloud-janitor), E2E_BASE (real stack
# directory, default /tmp/real-openstack), KEEP_STACK=1 (leave the real stack running afterwards; a
# stack that was already up when this started is always left running).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
MODE=${1:-sim}
shift || true
case "$MODE" in sim|real|all) ;; *) echo "usage: $0 sim|real|all [pytest args...]" >&2; exit 64 ;; esac
BASE=${E2E_BASE:-/tmp/real-openstack}
VENV=$ROOT/tests/e2e/.venv
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"

install_system_packages() {
  local need=()
  python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
  command -v curl >/dev/null || need+=(curl)
  [ ${#need[@]} = 0 ] && return 0
  apt-get -o DPkg::Lock::Timeout=600 update -qq || return
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${need[@]}" >/dev/null
}

install_test_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/tests/e2e/requirements.txt"
}

run_pytest() { # TARGET [ARGS...]
  local target=$1; shift
  JANITOR_E2E_TARGET=$target JANITOR_E2E_CLOUDS_YAML=$BASE/state/clouds.yaml \
    "$VENV/bin/pytest" -c "$ROOT/tests/e2e/pytest.ini" --rootdir "$ROOT/tests/e2e" "$ROOT/tests/e2e" "$@"
}

STACK_STARTED=0
on_exit() {
  local rc=$?
  if [ "$STACK_STARTED" = 1 ]; then
    if [ $rc != 0 ]; then
      echo "::: the run failed (exit $rc): logs of the real stack"
      LINES=80 "$ROOT/tests/real-openstack/dump-logs.sh" "$BASE" || true
    fi
    if [ "${KEEP_STACK:-0}" = 1 ]; then
      echo "::: KEEP_STACK=1: the real stack stays up ($ROOT/tests/real-openstack/down.sh $BASE stops it)"
    else
      phase "real stack down" "$ROOT/tests/real-openstack/down.sh" "$BASE" || true
    fi
  fi
  print_timings
  exit $rc
}
trap on_exit EXIT

phase "system packages" install_system_packages
phase "test venv (pip)" install_test_venv
phase "cargo build" build_janitor

if [ "$MODE" = sim ] || [ "$MODE" = all ]; then
  phase "tests against the simulator" run_pytest sim "$@"
  phase "openstacksdk checks of the simulator" env PYTHON="$VENV/bin/python" "$ROOT/sim/tests/py/run_check.sh" openstack
fi
if [ "$MODE" = real ] || [ "$MODE" = all ]; then
  if [ -f "$BASE/state/ready" ]; then
    echo "::: a real stack is already up under $BASE: using it and leaving it up"
  else
    STACK_STARTED=1
  fi
  phase "real stack up" "$ROOT/tests/real-openstack/up.sh" "$BASE"
  phase "tests against the real stack" run_pytest real "$@"
fi
