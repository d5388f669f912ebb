#!/bin/bash
# Print the tail of every log up.sh and the services wrote under BASE_DIR/logs (for CI failures).
# Usage: dump-logs.sh [BASE_DIR]      (LINES=N lines per log, default 60)
BASE=${1:-${TMPDIR:-/tmp}/real-openstack}
N=${LINES:-60}
shopt -s nullglob
logs=("$BASE"/logs/*.log "$BASE"/logs/*.txt)
[ ${#logs[@]} -gt 0 ] || { echo "dump-logs.sh: no logs under $BASE/logs"; exit 0; }
for f in "${logs[@]}"; do
  echo "===================== $f (last $N lines of $(wc -l < "$f"))"
  tail -n "$N" "$f"
done
# the errors that matter are usually further up than the tail: list them, bounded
echo "===================== ERROR/Traceback lines (first 20 per log)"
for f in "${logs[@]}"; do
  grep -n -m 20 -E ' ERROR |Traceback' "$f" | sed "s|^|$(basename "$f"):|"
done
exit 0
