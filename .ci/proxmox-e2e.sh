#!/bin/bash
# End-to-end tests of cloud-janitor against the simulated Proxmox VE through proxmoxer, a real Proxmox
# client library (tests/e2e/test_proxmox.py): CI-like guests created through proxmoxer, `cloud-janitor
# once`, the result checked through proxmoxer.
#   .ci/proxmox-e2e.sh [PYTEST_ARGS...]
# Works on a fresh Debian 12 machine with root and a Rust toolchain: installs python3-venv if needed,
# the test venv at tests/e2e/.venv-proxmox (pytest, pytest-timeout, proxmoxer, requests), and builds
# the binary. Environment: JANITOR_BIN (default: built here, target/debug/cloud-janitor).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
VENV=$ROOT/tests/e2e/.venv-proxmox
# Pinned so a CI run tests the same client as the last one.
PACKAGES=(pytest==9.2.0 pytest-timeout==2.4.0 proxmoxer==2.3.0 requests==2.34.2)
# shellcheck source=.ci/lib.sh
. "$ROOT/.ci/lib.sh"
on_exit() {
  local rc=$?
  print_timings
  exit $rc
}
trap on_exit EXIT


install_test_venv() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" || return
  "$VENV/bin/pip" install -q --disable-pip-version-check "${PACKAGES[@]}" || return
  # The test module skips itself without proxmoxer; here that would be a silent pass.
  "$VENV/bin/python" -c 'import proxmoxer, requests, pytest_timeout'
}

# conftest.py belongs to the OpenStack tests (openstacksdk, not in this venv): --noconftest.
run_pytest() {
  "$VENV/bin/pytest" -c "$ROOT/tests/e2e/pytest.ini" --rootdir "$ROOT/tests/e2e" --noconftest \
    "$ROOT/tests/e2e/test_proxmox.py" "$@"
}

phase "system packages" install_python_venv
phase "test venv (pip)" install_test_venv
phase "cargo build" build_janitor
phase "proxmoxer vs simulator" run_pytest "$@"
phase "proxmoxer checks of the simulator" env PYTHON="$VENV/bin/python" "$ROOT/sim/tests/py/run_check.sh" proxmox
