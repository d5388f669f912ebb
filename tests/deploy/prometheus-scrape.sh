#!/usr/bin/env bash
# A real Prometheus scrapes a real `cloud-janitor run` against the simulated clouds, and reads the
# pushes of `cloud-janitor once --pushgateway` (the CronJob variant) from a real Pushgateway.
#
#   tests/deploy/prometheus-scrape.sh [BINARY]
#
# 1. `cloud-janitor simulate` serves the simulated OpenStack and Proxmox VE on
#    127.0.0.1, seeded with CI leftovers, and writes a clouds.yaml and a config.
# 2. `cloud-janitor run` uses that config with a pass every 2 seconds and
#    serves /metrics on 127.0.0.1.
# 3. Prometheus (Debian package `prometheus`) scrapes it and a Pushgateway
#    (`prometheus-pushgateway`, with honor_labels) every second and evaluates
#    both rules files of deploy/prometheus/.
# 4. Through Prometheus' HTTP API the test waits (with a deadline) until the
#    delete, pass and leftover series have arrived with the values the janitor
#    itself exports, checks that every rule evaluates without error and that
#    every query of the Grafana dashboard runs, and runs `promtool check
#    metrics` on the /metrics output. A `once` started beside the daemon must
#    exit 2, refused by the history's lock. Then it stops the janitor with
#    SIGTERM and expects it to exit within the grace period.
# 5. `once --report-only --pushgateway` runs one pass on the same history and
#    its series reach Prometheus with job="cloud-janitor-once".
#
# Needs: prometheus, promtool, prometheus-pushgateway, curl, python3. Every
# process it starts is stopped on exit. Environment: SCRAPE_TEST_DEADLINE
# (seconds, default 120) for each wait; KEEP_WORK=1 keeps the temporary
# directory; JANITOR_PORT / PROMETHEUS_PORT (defaults 9464 / 9090, or a free
# port if taken).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
BIN=${1:-$ROOT/target/x86_64-unknown-linux-gnu/release/cloud-janitor}
DEADLINE=${SCRAPE_TEST_DEADLINE:-120}
RULES=$ROOT/deploy/prometheus/cloud-janitor-rules.yaml
ONCE_RULES=$ROOT/deploy/prometheus/cloud-janitor-once-rules.yaml
DASHBOARD=$ROOT/deploy/grafana/cloud-janitor-dashboard.json

[[ -x $BIN ]] || { echo "scrape test: no executable at $BIN" >&2; exit 2; }
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
for tool in prometheus promtool prometheus-pushgateway curl python3; do
    command -v "$tool" >/dev/null || { echo "scrape test: $tool not found (apt-get install prometheus prometheus-pushgateway curl)" >&2; exit 2; }
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloud-janitor-scrape.XXXXXX")
declare -A PIDS=()   # name -> pid of every background process started here
passed=0
failed=0

log() { printf '[scrape %s] %s\n' "$(date +%T)" "$*"; }
ok() { passed=$((passed + 1)); log "ok: $*"; }
fail() { failed=$((failed + 1)); log "FAIL: $*"; }
die() { log "FAIL: $*"; failed=$((failed + 1)); exit 1; }

stop() { # stop NAME [GRACE_SECONDS]: SIGTERM, wait, then SIGKILL; returns the exit status
    local name=$1 grace=${2:-10} pid=${PIDS[$1]:-}
    [[ -n $pid ]] || return 0
    unset "PIDS[$name]"
    kill -TERM "$pid" 2>/dev/null || true
    local waited=0
    while kill -0 "$pid" 2>/dev/null && ((waited < grace * 10)); do
        sleep 0.1
        waited=$((waited + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name (pid $pid) did not stop within ${grace}s of SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 124
    fi
    local status=0
    wait "$pid" 2>/dev/null || status=$?
    return "$status"
}

cleanup() {
    local status=$?
    trap - EXIT
    for name in janitor simulate prometheus pushgateway; do
        stop "$name" 5 || true
    done
    if ((status != 0 || failed != 0)); then
        for f in simulate.log janitor.log prometheus.log pushgateway.log once.log; do
            [[ -s $WORK/$f ]] || continue
            echo "----- last lines of $f -----"
            tail -n 40 "$WORK/$f"
        done
    fi
    if [[ ${KEEP_WORK:-0} == 1 ]]; then
        log "kept $WORK"
    else
        rm -rf "$WORK"
    fi
    echo "prometheus-scrape: $passed passed, $failed failed"
    ((failed == 0)) || exit 1
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
EOF
}
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
pick_port() { # preferred port if free, else any free one
    if port_free "$1"; then echo "$1"; else free_port; fi
}

alive() { # fail at once if a started process has exited
    local name
    for name in "$@"; do
        kill -0 "${PIDS[$name]}" 2>/dev/null || die "$name exited early (see its log below)"
    done
}

wait_until() { # wait_until DESCRIPTION COMMAND...: polls COMMAND until it succeeds or DEADLINE passes
    local what=$1 start=$SECONDS
    shift
    until "$@"; do
        alive "${!PIDS[@]}"
        ((SECONDS - start < DEADLINE)) || { fail "$what: not within ${DEADLINE}s"; return 1; }
        sleep 0.5
    done
    ok "$what (after $((SECONDS - start))s)"
}

SIM_PORT=$(free_port)
PVE_PORT=$(free_port)
JANITOR_PORT=${JANITOR_PORT:-$(pick_port 9464)}
PROMETHEUS_PORT=${PROMETHEUS_PORT:-$(pick_port 9090)}
PUSHGATEWAY_PORT=$(free_port)
JANITOR=http://127.0.0.1:$JANITOR_PORT
PROM=http://127.0.0.1:$PROMETHEUS_PORT
log "work dir $WORK; janitor on $JANITOR_PORT, prometheus on $PROMETHEUS_PORT, simulated clouds on $SIM_PORT and $PVE_PORT"

# --- 1. the simulated clouds -------------------------------------------------
simulate_args=(--listen "127.0.0.1:$SIM_PORT" --clouds-yaml "$WORK/clouds.yaml" --config-out "$WORK/simulated.toml")
# The simulated Proxmox VE too, where this build has it.
if "$BIN" simulate --help 2>/dev/null | grep -q -- --proxmox-listen; then
    simulate_args+=(--proxmox-listen "127.0.0.1:$PVE_PORT")
fi
log "cloud-janitor simulate ${simulate_args[*]}"
"$BIN" simulate "${simulate_args[@]}" >"$WORK/simulate.log" 2>&1 &
PIDS[simulate]=$!
wait_until "simulator wrote its config" test -s "$WORK/simulated.toml"
wait_until "simulator listens" curl -s -o /dev/null "http://127.0.0.1:$SIM_PORT/"

# --- 2. the janitor daemon ---------------------------------------------------
# The simulator's config with a pass every 2 seconds, /metrics on our port, and
# the history file in the work directory: top-level keys replaced or added.
python3 - "$WORK/simulated.toml" "$WORK/janitor.toml" "$JANITOR_PORT" "$WORK/history.db" <<'EOF'
import re, sys
source, target, port, state = sys.argv[1:5]
overrides = {"schedule": '"*/2 * * * * *"', "listen": f'"127.0.0.1:{port}"', "history_file": f'"{state}"'}
lines = open(source, encoding="utf-8").read().splitlines()
first_table = next((i for i, l in enumerate(lines) if l.lstrip().startswith("[")), len(lines))
top = [l for l in lines[:first_table] if not re.match(r"\s*(%s)\s*=" % "|".join(overrides), l)]
top += [f"{key} = {value}" for key, value in overrides.items()]
open(target, "w", encoding="utf-8").write("\n".join(top + lines[first_table:]) + "\n")
EOF
"$BIN" run --config "$WORK/janitor.toml" >"$WORK/janitor.log" 2>&1 &
PIDS[janitor]=$!
wait_until "janitor /healthz answers 200" curl -fs -o /dev/null "$JANITOR/healthz"
wait_until "janitor /readyz answers 200" curl -fs -o /dev/null "$JANITOR/readyz"

# The image's HEALTHCHECK runs `cloud-janitor healthcheck`: it must pass on a
# live daemon and fail where nothing listens.
if "$BIN" healthcheck --url "$JANITOR/healthz" >"$WORK/healthcheck.log" 2>&1; then
    ok "cloud-janitor healthcheck passes against the running daemon"
else
    fail "cloud-janitor healthcheck --url $JANITOR/healthz failed: $(cat "$WORK/healthcheck.log")"
fi
if timeout 30 "$BIN" healthcheck --url "http://127.0.0.1:$(free_port)/healthz" >/dev/null 2>&1; then
    fail "cloud-janitor healthcheck passed where nothing listens"
else
    ok "cloud-janitor healthcheck fails where nothing listens"
fi

# --- 3. a Pushgateway and Prometheus ----------------------------------------
PUSHGATEWAY=http://127.0.0.1:$PUSHGATEWAY_PORT
prometheus-pushgateway --web.listen-address="127.0.0.1:$PUSHGATEWAY_PORT" --log.level=warn \
    >"$WORK/pushgateway.log" 2>&1 &
PIDS[pushgateway]=$!
wait_until "pushgateway is ready" curl -fs -o /dev/null "$PUSHGATEWAY/-/ready"
cat >"$WORK/prometheus.yml" <<EOF
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $RULES
  - $ONCE_RULES
scrape_configs:
  - job_name: cloud-janitor
    static_configs:
      - targets: ["127.0.0.1:$JANITOR_PORT"]
  # Pushed series keep the job label they were pushed with.
  - job_name: pushgateway
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$PUSHGATEWAY_PORT"]
EOF
promtool check config "$WORK/prometheus.yml" >/dev/null
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PROMETHEUS_PORT" --log.level=warn \
    >"$WORK/prometheus.log" 2>&1 &
PIDS[prometheus]=$!
wait_until "prometheus is ready" curl -fs -o /dev/null "$PROM/-/ready"

# --- 4. what Prometheus sees ---------------------------------------------------
# query EXPR: prints the instant vector as "value<TAB>labels" lines, or fails on an API error.
query() {
    curl -fsS --get --data-urlencode "query=$1" "$PROM/api/v1/query" | python3 -c '
import json, sys
answer = json.load(sys.stdin)
if answer.get("status") != "success":
    sys.exit("query failed: %s" % answer.get("error"))
data = answer["data"]
rows = data["result"] if data["resultType"] in ("vector", "matrix") else [{"metric": {}, "value": data["result"]}]
for row in rows:
    labels = ",".join(f"{k}={v}" for k, v in sorted(row["metric"].items()))
    value = row["value"][1]
    print(f"{value}\t{labels}")
'
}
# holds EXPR: the query returns at least one sample (a comparison filters the rest).
holds() { [[ -n $(query "$1") ]]; }

wait_until "up{job=\"cloud-janitor\"} == 1" holds 'up{job="cloud-janitor"} == 1'
wait_until "cloud_janitor_build_info == 1" holds 'cloud_janitor_build_info{job="cloud-janitor"} == 1'
wait_until "cloud_janitor_passes_total > 0" holds 'sum(cloud_janitor_passes_total{job="cloud-janitor"}) > 0'
wait_until "cloud_janitor_deletes_total{outcome=\"deleted\"} > 0" \
    holds 'sum(cloud_janitor_deletes_total{job="cloud-janitor",outcome="deleted"}) > 0'
wait_until "cloud_janitor_leftover_resources series present" holds 'count(cloud_janitor_leftover_resources{job="cloud-janitor"}) > 0'
wait_until "cloud_janitor_api_requests_total{status_class=\"2xx\"} > 0" \
    holds 'sum(cloud_janitor_api_requests_total{job="cloud-janitor",status_class="2xx"}) > 0'
wait_until "cloud_janitor_last_pass_success_timestamp_seconds set" \
    holds 'cloud_janitor_last_pass_success_timestamp_seconds{job="cloud-janitor"} > 0'
if [[ " ${simulate_args[*]} " == *" --proxmox-listen "* ]]; then
    wait_until "deletes in both simulated clouds (OpenStack and Proxmox VE)" \
        holds 'count(sum by (cloud) (cloud_janitor_deletes_total{job="cloud-janitor",outcome="deleted"}) > 0) >= 2'
fi
# The schedule keeps running passes: a second one ends, and its leftovers are
# the ones the simulator holds back on purpose (busy, in use), not new deletes.
wait_until "a second scheduled pass ran" holds 'sum(cloud_janitor_passes_total{job="cloud-janitor"}) >= 2'

# The values Prometheus holds are the janitor's own: compare the latest scrape
# with /metrics, polled, since a pass may change them between the two reads.
exported_sum() { # exported_sum METRIC LABEL_FILTER: sum of the series in /metrics whose labels contain the filter
    curl -fsS "$JANITOR/metrics" | python3 -c '
import sys
name, needle = sys.argv[1], sys.argv[2]
total = 0.0
for line in sys.stdin:
    if line.startswith(name + "{") or line.startswith(name + " "):
        if needle in line:
            total += float(line.rsplit(" ", 1)[1])
print(total)
' "$1" "$2"
}
same_values() {
    local metric=$1 filter=$2 promql=$3 exported seen
    exported=$(exported_sum "$metric" "$filter")
    seen=$(query "$promql" | cut -f1)
    [[ -n $seen ]] && python3 -c 'import sys; sys.exit(abs(float(sys.argv[1]) - float(sys.argv[2])) > 1e-9)' "$exported" "$seen"
}
wait_until "Prometheus' deletes_total{outcome=\"deleted\"} equals the janitor's" \
    same_values cloud_janitor_deletes_total 'outcome="deleted"' \
    'sum(cloud_janitor_deletes_total{job="cloud-janitor",outcome="deleted"})'
wait_until "Prometheus' leftover_resources equals the janitor's" \
    same_values cloud_janitor_leftover_resources '' 'sum(cloud_janitor_leftover_resources{job="cloud-janitor"})'

log "series as Prometheus sees them:"
for expr in 'sum by (cloud, kind, outcome) (cloud_janitor_deletes_total)' \
            'sum by (cloud, kind, reason) (cloud_janitor_leftover_resources)' \
            'sum by (result) (cloud_janitor_passes_total)'; do
    echo "  $expr"
    query "$expr" | sed 's/^/    /'
done

# Every rule of the rules file evaluates without error on real series.
rules_healthy() {
    curl -fsS "$PROM/api/v1/rules" | python3 -c '
import json, sys
rules = [r for g in json.load(sys.stdin)["data"]["groups"] for r in g["rules"]]
bad = ["%s: %s" % (r["name"], r.get("lastError")) for r in rules if r.get("health") == "err"]
if bad:
    print("\n".join(bad), file=sys.stderr)
    sys.exit(2)
sys.exit(0 if rules and all(r.get("health") == "ok" for r in rules) else 1)
'
}
wait_until "every alert rule evaluated with health ok" rules_healthy

# Every query of the dashboard runs (variables set to match everything).
dashboard_queries() {
    python3 - "$DASHBOARD" <<'EOF'
import json, sys
dashboard = json.load(open(sys.argv[1], encoding="utf-8"))
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"].replace("$__rate_interval", "1m").replace("$job", ".*").replace("$cloud", ".*")
        print(f"{panel['title']}\t{expr}")
EOF
}
n_queries=0
n_empty=0
while IFS=$'\t' read -r title expr; do
    n_queries=$((n_queries + 1))
    if ! result=$(query "$expr" 2>&1); then
        fail "dashboard panel '$title': $expr: $result"
    elif [[ -z $result ]]; then
        n_empty=$((n_empty + 1))
        log "dashboard panel '$title' has no data yet: $expr"
    fi
done < <(dashboard_queries)
ok "all $n_queries dashboard queries ran ($n_empty without data yet)"

# --- 5. the exposition format ---------------------------------------------------
curl -fsS "$JANITOR/metrics" >"$WORK/metrics.txt"
if promtool check metrics <"$WORK/metrics.txt" >"$WORK/promtool-metrics.txt" 2>&1; then
    ok "promtool check metrics"
else
    fail "promtool check metrics: $(cat "$WORK/promtool-metrics.txt")"
fi

# --- 6. one janitor at a time ------------------------------------------------------
# A second janitor on the same history file is refused while the daemon holds its lock.
status=0
timeout 60 "$BIN" once --report-only --config "$WORK/janitor.toml" >"$WORK/once-locked.log" 2>&1 || status=$?
if ((status == 2)) && grep -q "held by another janitor" "$WORK/once-locked.log"; then
    ok "a once beside the daemon exits 2: $(grep -o 'held by another janitor[^;]*' "$WORK/once-locked.log" | head -n 1)"
else
    fail "a once beside the daemon exited $status: $(tail -n 3 "$WORK/once-locked.log")"
fi

# --- 7. clean shutdown ------------------------------------------------------------
status=0
stop janitor 30 || status=$?
if ((status == 0)); then
    ok "janitor exited 0 on SIGTERM"
else
    fail "janitor exited with status $status on SIGTERM (124: did not stop within 30s)"
fi

# --- 8. the CronJob variant: once pushes to the Pushgateway ------------------------------
# The daemon has stopped and released the history: a once takes it, reports and pushes.
status=0
timeout 120 "$BIN" once --report-only --config "$WORK/janitor.toml" --pushgateway "$PUSHGATEWAY" \
    >"$WORK/once.log" 2>&1 || status=$?
if ((status == 0 || status == 1)) && grep -q "metrics pushed" "$WORK/once.log"; then
    ok "once --report-only --pushgateway exited $status and pushed"
else
    fail "once --pushgateway exited $status: $(tail -n 5 "$WORK/once.log")"
fi
wait_until "Prometheus has the pushed pass (job=\"cloud-janitor-once\")" \
    holds 'sum(cloud_janitor_passes_total{job="cloud-janitor-once"}) == 1 and on() cloud_janitor_last_pass_end_timestamp_seconds{job="cloud-janitor-once"} > 0'
wait_until "every alert rule, the CronJob variant's too, evaluated with health ok" rules_healthy
