#!/usr/bin/env python3
"""Checks what schemas cannot: that the rendered manifests fit together and keep their promises.

    python3 tests/deploy/check-manifests.py --credentials CREDENTIALS.yaml VARIANT.yaml...

Each VARIANT.yaml is one `kubectl kustomize` output (the daemon, the CronJob, each with or without its
monitoring component), checked on its own; CREDENTIALS.yaml is the render of deploy/kubernetes/credentials
with its example files. Every pod runs non-root with a read-only root filesystem, no privilege
escalation and no capability, with requests and limits, the placeholder image, and whole-volume
mounts (no subPath) for the config and the credentials; the history lives on the ReadWriteOnce claim
the render contains; no variant ships a Secret; the shipped config deletes nothing (report-only); the
Deployment has one replica, is replaced (not rolled) and probes /healthz and /readyz; the CronJob never
overlaps and its pod failure policy tells exit 1 from 2 and 64; the Service, the ServiceMonitor, the
scrape annotations, the NetworkPolicy and the container agree on the metrics port; the NetworkPolicy
lets out DNS and the configured endpoints' ports; the monitoring objects carry the selector label; a
pushing CronJob pushes to the group its rules select. Then, over the repository's files: every path in
config/*.toml lies on a mount of the manifests, and every `README, "Section"` a deploy file cites is a
heading of README.md.
"""

import argparse
import base64
import pathlib
import re
import sys
import tomllib
import urllib.parse

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE_PLACEHOLDER = "registry.invalid/cloud-janitor"
SELECTOR_LABEL = ("release", "kube-prometheus-stack")
CONFIG_MOUNT = "/etc/cloud-janitor"
CREDENTIALS_MOUNT = "/run/secrets/cloud-janitor"
HISTORY_CLAIM = "cloud-janitor-history"
ONCE_RULES = ROOT / "deploy/prometheus/cloud-janitor-once-rules.yaml"
# The group `once --pushgateway` pushes to when the URL names none (src/commands/once.rs).
DEFAULT_PUSH_JOB = "cloud-janitor-once"

errors: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        errors.append(message)


def load(path: pathlib.Path) -> list[dict]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def pod_labels(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    return obj["spec"]["template"]["metadata"]["labels"]


def version() -> str:
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text(encoding="utf-8"))
    return cargo["workspace"]["package"]["version"]


def url_port(url: str) -> int:
    parsed = urllib.parse.urlsplit(url)
    return parsed.port or (443 if parsed.scheme == "https" else 80)


def check_pod(where: str, spec: dict, config: dict, by_kind: dict) -> None:
    security = spec.get("securityContext", {})
    check(security.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
    check(security.get("runAsUser", 0) != 0, f"{where}: runAsUser is 0 or unset")
    check(spec.get("automountServiceAccountToken") is False, f"{where}: a service account token is mounted")
    # Service links would inject CLOUD_JANITOR_PORT & co.
    check(spec.get("enableServiceLinks") is False, f"{where}: enableServiceLinks is not false")
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    claims = {c["metadata"]["name"]: c for c in by_kind.get("PersistentVolumeClaim", [])}
    check(
        claims.get(HISTORY_CLAIM, {}).get("spec", {}).get("accessModes") == ["ReadWriteOnce"],
        f"{where}: the claim {HISTORY_CLAIM} is missing or not ReadWriteOnce",
    )
    for container in spec["containers"]:
        name = f"{where}/{container['name']}"
        context = container.get("securityContext", {})
        check(context.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem is writable")
        check(context.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation allowed")
        check(context.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities not dropped")
        check(
            container["image"] == f"{IMAGE_PLACEHOLDER}:{version()}",
            f"{name}: image {container['image']} is not the documented placeholder {IMAGE_PLACEHOLDER}:{version()}",
        )
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                check(resource in resources.get(kind, {}), f"{name}: no {resource} {kind}")
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        for mount in mounts.values():
            # A subPath mount never sees an update of its ConfigMap or Secret.
            check("subPath" not in mount, f"{name}: {mount['mountPath']} is mounted with subPath")
        # The config file, clouds.yaml, the token file and the history must all be under a mount.
        wanted = {"config": f"{CONFIG_MOUNT}/config.toml", "history_file": config["history_file"]}
        for cloud in config["clouds"]:
            for key in ("clouds_yaml", "token_secret_file", "ca_file"):
                if key in cloud:
                    wanted[f"{cloud['name']}.{key}"] = cloud[key]
        for key, path in wanted.items():
            check(
                any(path.startswith(mount.rstrip("/") + "/") for mount in mounts),
                f"{name}: {key} {path} is on no volume mount",
            )
        for path, source in ((CONFIG_MOUNT, "configMap"), (CREDENTIALS_MOUNT, "secret")):
            mount = mounts.get(path)
            check(
                mount is not None and source in volumes.get(mount["name"], {}),
                f"{name}: {path} is not a {source} volume",
            )
        history_dir = str(pathlib.PurePosixPath(config["history_file"]).parent)
        mount = mounts.get(history_dir)
        check(mount is not None and not mount.get("readOnly", False), f"{name}: {history_dir} is not a writable mount")
        claim = volumes.get(mount["name"], {}).get("persistentVolumeClaim", {}).get("claimName") if mount else None
        check(claim == HISTORY_CLAIM, f"{name}: the history is not on the claim {HISTORY_CLAIM}")
        check("/tmp" in mounts and not mounts["/tmp"].get("readOnly", False), f"{name}: /tmp is not a writable mount")


def failure_action(job: dict, exit_code: int) -> str:
    """The pod failure policy's action for a container exiting with `exit_code` (first match wins)."""
    for rule in job.get("podFailurePolicy", {}).get("rules", []):
        codes = rule.get("onExitCodes")
        if not codes:
            continue
        if (exit_code in codes["values"]) == (codes["operator"] == "In"):
            return rule["action"]
    return "Count"


def check_cronjob(cronjob: dict, config: dict, by_kind: dict) -> None:
    where = f"CronJob/{cronjob['metadata']['name']}"
    check(cronjob["spec"].get("concurrencyPolicy") == "Forbid", f"{where}: runs may overlap")
    job = cronjob["spec"]["jobTemplate"]["spec"]
    spec = pod_spec(cronjob)
    check(spec.get("restartPolicy") == "Never", f"{where}: restartPolicy is not Never")
    check_pod(where, spec, config, by_kind)
    container = spec["containers"][0]
    check(container["args"][0] == "once", f"{where}: does not run `once`")
    check(failure_action(job, 1) == "Count", f"{where}: exit 1 (leftovers) is not an ordinary failure")
    for code in (2, 64, 137):
        check(failure_action(job, code) == "FailJob", f"{where}: exit {code} does not fail the Job as broken")
    disruption_ignored = any(
        rule["action"] == "Ignore" and any(c.get("type") == "DisruptionTarget" for c in rule.get("onPodConditions", []))
        for rule in job.get("podFailurePolicy", {}).get("rules", [])
    )
    check(disruption_ignored, f"{where}: an evicted or preempted pod fails the Job")
    push = [a for a in container["args"] if a.startswith("--pushgateway")]
    if not push:
        return
    url = push[0].split("=", 1)[1]
    path = urllib.parse.urlsplit(url).path
    job_name = path.split("/metrics/job/", 1)[1].split("/")[0] if "/metrics/job/" in path else DEFAULT_PUSH_JOB
    rules = ONCE_RULES.read_text(encoding="utf-8")
    check(f'job="{job_name}"' in rules, f"{where}: pushes to job {job_name}, which {ONCE_RULES.name} does not select")
    port = url_port(url)
    egress_ports = [
        p["port"]
        for policy in by_kind.get("NetworkPolicy", [])
        for rule in policy["spec"].get("egress", [])
        for p in rule.get("ports", [])
    ]
    check(port in egress_ports, f"{where}: no NetworkPolicy lets it reach the Pushgateway's port {port}")


def check_network_policy(by_kind: dict, config: dict, listen_port: int, clouds_yaml: dict) -> None:
    policies = [p for p in by_kind.get("NetworkPolicy", []) if p["metadata"]["name"] == "cloud-janitor"]
    check(len(policies) == 1, "no NetworkPolicy cloud-janitor")
    if not policies:
        return
    spec = policies[0]["spec"]
    for workload in by_kind.get("Deployment", []) + by_kind.get("CronJob", []):
        labels = pod_labels(workload)
        check(
            all(labels.get(k) == v for k, v in spec["podSelector"]["matchLabels"].items()),
            f"NetworkPolicy/cloud-janitor does not select {workload['kind']}/{workload['metadata']['name']}",
        )
    check(sorted(spec.get("policyTypes", [])) == ["Egress", "Ingress"], "NetworkPolicy/cloud-janitor does not restrict both ways")
    ingress_ports = [p["port"] for rule in spec.get("ingress", []) for p in rule.get("ports", [])]
    check(ingress_ports == [listen_port], f"NetworkPolicy/cloud-janitor lets in {ingress_ports}, not only {listen_port}")
    egress_ports = {p["port"] for rule in spec.get("egress", []) for p in rule.get("ports", [])}
    wanted = {53}
    for cloud in config["clouds"]:
        if cloud["type"] == "proxmox":
            wanted.add(url_port(cloud["url"]))
        elif cloud["cloud"] in clouds_yaml["clouds"]:
            wanted.add(url_port(clouds_yaml["clouds"][cloud["cloud"]]["auth"]["auth_url"]))
    check(wanted <= egress_ports, f"NetworkPolicy/cloud-janitor does not let out the ports {sorted(wanted - egress_ports)}")


def check_service(service: dict, labels: dict, listen_port: int, by_kind: dict) -> None:
    name = f"Service/{service['metadata']['name']}"
    check(all(labels.get(k) == v for k, v in service["spec"]["selector"].items()), f"{name} does not select the Deployment's pods")
    check(any(p.get("targetPort") in ("metrics", listen_port) for p in service["spec"]["ports"]), f"{name} does not target the metrics port")
    annotations = service["metadata"].get("annotations", {})
    check(annotations.get("prometheus.io/scrape") == "true", f"{name}: no prometheus.io/scrape annotation")
    check(annotations.get("prometheus.io/port") == str(listen_port), f"{name}: prometheus.io/port is not {listen_port}")
    for monitor in by_kind.get("ServiceMonitor", []):
        selector = monitor["spec"]["selector"]["matchLabels"]
        check(
            all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()),
            f"ServiceMonitor/{monitor['metadata']['name']} does not select the Service",
        )
        service_ports = {p["name"] for p in service["spec"]["ports"]}
        check(
            all(e["port"] in service_ports for e in monitor["spec"]["endpoints"]),
            f"ServiceMonitor/{monitor['metadata']['name']} scrapes a port the Service does not have",
        )


def check_variant(path: pathlib.Path, secret: dict, clouds_yaml: dict) -> None:
    before = len(errors)
    by_kind: dict[str, list[dict]] = {}
    for obj in load(path):
        by_kind.setdefault(obj["kind"], []).append(obj)
    check("Secret" not in by_kind, f"{path.name}: ships a Secret; credentials are the operator's")
    config = tomllib.loads(by_kind["ConfigMap"][0]["data"]["config.toml"])
    check(config.get("mode") == "report-only", f"{path.name}: the shipped config is not report-only")
    listen_port = int(config["listen"].rsplit(":", 1)[1])

    for cloud in config["clouds"]:
        for key in ("clouds_yaml", "token_secret_file"):
            if key in cloud:
                file = pathlib.PurePosixPath(cloud[key])
                check(str(file.parent) == CREDENTIALS_MOUNT, f"{cloud['name']}.{key} {file} is not under {CREDENTIALS_MOUNT}")
                check(file.name in secret["data"], f"the credentials Secret has no key {file.name!r} for {cloud['name']}.{key}")
        if cloud["type"] == "openstack":
            check(cloud["cloud"] in clouds_yaml["clouds"], f"clouds.yaml.example has no entry {cloud['cloud']!r}")

    for deployment in by_kind.get("Deployment", []):
        where = f"Deployment/{deployment['metadata']['name']}"
        spec = pod_spec(deployment)
        check(deployment["spec"].get("replicas") == 1, f"{where}: replicas is not 1")
        check(deployment["spec"].get("strategy", {}).get("type") == "Recreate", f"{where}: strategy is not Recreate")
        check_pod(where, spec, config, by_kind)
        container = spec["containers"][0]
        check(container["args"][0] == "run", f"{where}: does not run the daemon")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        check(ports.get("metrics") == listen_port, f"{where}: port 'metrics' is not the config's listen port {listen_port}")
        check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{where}: liveness not on /healthz")
        check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{where}: readiness not on /readyz")
        check(bool(by_kind.get("Service")), f"{where}: no Service")
        for service in by_kind.get("Service", []):
            check_service(service, pod_labels(deployment), listen_port, by_kind)

    for cronjob in by_kind.get("CronJob", []):
        check_cronjob(cronjob, config, by_kind)
    key, value = SELECTOR_LABEL
    for kind in ("ServiceMonitor", "PrometheusRule"):
        for obj in by_kind.get(kind, []):
            check(obj["metadata"].get("labels", {}).get(key) == value, f"{kind}/{obj['metadata']['name']}: no label {key}: {value}")
    check_network_policy(by_kind, config, listen_port, clouds_yaml)
    check("Deployment" in by_kind or "CronJob" in by_kind, f"{path.name}: no Deployment and no CronJob rendered")
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    print(f"{path.name}: {kinds}: {len(errors) - before} problem(s)")


def heading_anchor(heading: str) -> str:
    """GitHub's and GitLab's anchor of a heading: lower case, punctuation dropped, spaces as '-'."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def check_repository() -> None:
    """Paths in the example configs lie on the manifests' mounts; cited README sections exist."""
    mounts = (CONFIG_MOUNT, CREDENTIALS_MOUNT, "/var/lib/cloud-janitor")
    for example in sorted((ROOT / "config").glob("*.toml")):
        config = tomllib.loads(example.read_text(encoding="utf-8"))
        paths = [("history_file", config.get("history_file"))]
        for cloud in config.get("clouds", []):
            keys = ("clouds_yaml", "token_secret_file", "password_file", "ca_file")
            paths += [(f"{cloud['name']}.{key}", cloud.get(key)) for key in keys]
        for key, path in paths:
            if path:
                check(
                    any(path.startswith(m + "/") for m in mounts),
                    f"config/{example.name}: {key} {path} is on none of the manifests' mounts {mounts}",
                )
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    headings = {m.group(1).strip() for m in re.finditer(r"^#{2,6}\s+(.+)$", readme, re.MULTILINE)}
    anchors = {heading_anchor(h) for h in headings}
    files = [ROOT / "Dockerfile", ROOT / ".dockerignore"]
    for directory in ("deploy", "config", "docs", "tests/deploy"):
        files += sorted(p for p in (ROOT / directory).rglob("*") if p.is_file())
    cited = 0
    for file in files:
        if file == pathlib.Path(__file__).resolve() or file.suffix not in ("", ".yaml", ".toml", ".md", ".example", ".py", ".sh"):
            continue
        text = file.read_text(encoding="utf-8")
        where = file.relative_to(ROOT)
        # `README, "Section"`, also across a line break and a comment sign.
        for match in re.finditer(r'README(?:\.md)?,\s+(?:#\s+)?"([^"]+)"', text):
            cited += 1
            section = re.sub(r"\s+(?:#\s+)?", " ", match.group(1))
            check(section in headings, f"{where} cites README section {section!r}, which README.md does not have")
        for match in re.finditer(r"README\.md#([\w-]+)", text):
            cited += 1
            check(match.group(1) in anchors, f"{where} links README.md#{match.group(1)}, which does not exist")
    print(f"config/*.toml paths on the manifests' mounts; {cited} README citations checked")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--credentials", type=pathlib.Path, required=True)
    parser.add_argument("variants", type=pathlib.Path, nargs="+")
    args = parser.parse_args()
    secrets = [o for o in load(args.credentials) if o["kind"] == "Secret"]
    if len(secrets) != 1 or secrets[0]["metadata"]["name"] != "cloud-janitor-credentials":
        print("ERROR the credentials render is not one Secret cloud-janitor-credentials", file=sys.stderr)
        return 1
    secret = secrets[0]
    clouds_yaml = yaml.safe_load(base64.b64decode(secret["data"]["clouds.yaml"]))
    for variant in args.variants:
        check_variant(variant, secret, clouds_yaml)
    check_repository()
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    print(f"{len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
