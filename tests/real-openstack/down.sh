#!/bin/bash
# Stop what up.sh started under BASE_DIR, each service by the pid in its pid file (every service was
# started with setsid, so that pid is also its process group: signalling the group reaches the forked
# workers too, gunicorn workers and nova/cinder ServiceWrapper children), then RabbitMQ and MariaDB.
# Idempotent: with nothing running it does nothing and exits 0. Logs under BASE_DIR/logs are kept.
# Usage: down.sh [BASE_DIR]      (KEEP_DB=1 leaves MariaDB and RabbitMQ running)
set -uo pipefail
BASE=${1:-${TMPDIR:-/tmp}/real-openstack}
[ -d "$BASE" ] || { echo "down.sh: $BASE does not exist: nothing to stop"; exit 0; }
rm -f "$BASE/state/ready"
group_alive() { kill -0 "$1" 2>/dev/null || kill -0 -- "-$1" 2>/dev/null; }
PIDS=()
for f in "$BASE"/pids/*.pid; do
  [ -f "$f" ] || continue
  pid=$(tr -dc 0-9 < "$f")
  rm -f "$f"
  [ -n "$pid" ] || continue
  if [ "$(ps -o pgid= -p "$pid" 2>/dev/null | tr -d ' ')" = "$pid" ] || kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null && PIDS+=("$pid")
  elif kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null && PIDS+=("$pid")
  fi
done
for _ in $(seq 1 60); do
  alive=0
  for p in "${PIDS[@]}"; do group_alive "$p" && alive=1; done
  [ $alive = 0 ] && break
  sleep 0.5
done
for p in "${PIDS[@]}"; do
  if group_alive "$p"; then
    kill -KILL -- "-$p" 2>/dev/null; kill -KILL "$p" 2>/dev/null
    echo "down.sh: SIGKILLed process group $p (did not stop within 30 s of SIGTERM)"
  fi
done
echo "down.sh: stopped ${#PIDS[@]} service process groups under $BASE"
if [ "${KEEP_DB:-0}" != 1 ]; then
  service rabbitmq-server stop >/dev/null 2>&1 || true
  # rabbitmq leaves the Erlang port mapper behind; epmd -kill refuses while any Erlang node is registered
  command -v epmd >/dev/null && { epmd -kill >/dev/null 2>&1 || true; }
  service mariadb stop >/dev/null 2>&1 || true
fi
exit 0
