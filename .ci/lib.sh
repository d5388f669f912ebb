# shellcheck shell=bash
# Sourced (not run) by .ci/e2e.sh and .ci/proxmox-e2e.sh: phase timings and the janitor build.
# Expects ROOT (the repository) to be set; sets T0 and TIMINGS.

T0=$EPOCHREALTIME
TIMINGS=()
since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }
# The functions phase runs stop at their first failure by `|| return` (errexit is off inside `||`).
phase() { # NAME COMMAND...: runs COMMAND, records how long it took
  local name=$1 t=$EPOCHREALTIME rc=0; shift
  echo "::: $name"
  "$@" || rc=$?
  TIMINGS+=("$(printf '%-28s %7ss%s' "$name" "$(since "$t")" "$([ $rc = 0 ] || echo "  (exit $rc)")")")
  return $rc
}
print_timings() {
  echo "::: timings"
  local line
  for line in "${TIMINGS[@]}"; do echo "    $line"; done
  echo "    $(printf '%-28s %7ss' total "$(since "$T0")")"
}

# Python's venv module (Debian splits it out as python3-venv), installed when missing.
install_python_venv() {
  python3 -c 'import ensurepip, venv' 2>/dev/null && return 0
  apt-get -o DPkg::Lock::Timeout=600 update -qq || return
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq python3-venv >/dev/null
}

# JANITOR_BIN when set (it must be executable), else the binary built here, exported as JANITOR_BIN.
build_janitor() {
  if [ -n "${JANITOR_BIN:-}" ]; then
    [ -x "$JANITOR_BIN" ] || { echo "JANITOR_BIN=$JANITOR_BIN is not executable" >&2; return 1; }
    return 0
  fi
  # Also when the binary exists: cargo rebuilds only what changed, so a stale binary is never tested.
  cargo build --quiet --bin cloud-janitor || return
  export JANITOR_BIN=$ROOT/target/debug/cloud-janitor
}
