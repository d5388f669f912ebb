#!/usr/bin/env python3
"""Checks what schemas cannot: that the rendered manifests fit together and keep their promises.

    python3 tests/deploy/check-manifests.py RENDERED.yaml...   (e.g. `kubectl kustomize` output)

Every pod runs non-root with a read-only root filesystem, no privilege escalation and no capability,
with requests and limits; the Deployment has one replica, is replaced (not rolled) and probes /healthz
and /readyz; the CronJob never overlaps; the Service, the ServiceMonitor and the container agree on
the metrics port; and the example config and secret parse and point at the paths the pods mount.
"""

import pathlib
import sys
import tomllib

import yaml

errors: list[str] = []


def check(condition: bool, message: str) -> None:
    if not condition:
        errors.append(message)


def pod_spec(obj: dict) -> dict:
    if obj["kind"] == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def check_pod(where: str, spec: dict, config: dict) -> None:
    security = spec.get("securityContext", {})
    check(security.get("runAsNonRoot") is True, f"{where}: runAsNonRoot is not true")
    check(security.get("runAsUser", 0) != 0, f"{where}: runAsUser is 0 or unset")
    check(spec.get("automountServiceAccountToken") is False, f"{where}: a service account token is mounted")
    # Service links would inject CLOUD_JANITOR_PORT & co., read as config overrides.
    check(spec.get("enableServiceLinks") is False, f"{where}: enableServiceLinks is not false")
    for container in spec["containers"]:
        name = f"{where}/{container['name']}"
        context = container.get("securityContext", {})
        check(context.get("readOnlyRootFilesystem") is True, f"{name}: root filesystem is writable")
        check(context.get("allowPrivilegeEscalation") is False, f"{name}: privilege escalation allowed")
        check(context.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities not dropped")
        resources = container.get("resources", {})
        for kind in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                check(resource in resources.get(kind, {}), f"{name}: no {resource} {kind}")
        mounts = {m["mountPath"]: m for m in container.get("volumeMounts", [])}
        # The config file, clouds.yaml, the token file and the state file must all be under a mount.
        wanted = {"config": "/etc/cloud-janitor/config.toml", "history_file": config["history_file"]}
        for cloud in config["clouds"]:
            for key in ("clouds_yaml", "token_secret_file", "ca_file"):
                if key in cloud:
                    wanted[f"{cloud['name']}.{key}"] = cloud[key]
        for key, path in wanted.items():
            check(
                any(path == mount or path.startswith(mount.rstrip("/") + "/") for mount in mounts),
                f"{name}: {key} {path} is on no volume mount",
            )
        state_dir = str(pathlib.PurePosixPath(config["history_file"]).parent)
        for directory in (state_dir, "/tmp"):
            check(
                directory in mounts and not mounts[directory].get("readOnly", False),
                f"{name}: {directory} is not a writable mount",
            )


def main() -> int:
    objects = [
        doc
        for path in sys.argv[1:]
        for doc in yaml.safe_load_all(pathlib.Path(path).read_text(encoding="utf-8"))
        if doc
    ]
    by_kind: dict[str, list[dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj["kind"], []).append(obj)

    config_map = by_kind["ConfigMap"][0]
    config = tomllib.loads(config_map["data"]["config.toml"])
    listen_port = int(config["listen"].rsplit(":", 1)[1])
    secret = by_kind["Secret"][0]
    clouds_yaml = yaml.safe_load(secret["stringData"]["clouds.yaml"])
    for cloud in config["clouds"]:
        if cloud["type"] == "openstack":
            check(cloud["cloud"] in clouds_yaml["clouds"], f"clouds.yaml has no entry {cloud['cloud']!r}")
        if "token_secret_file" in cloud:
            key = pathlib.PurePosixPath(cloud["token_secret_file"]).name
            check(key in secret["stringData"], f"the Secret has no key {key!r} for token_secret_file")

    for deployment in by_kind.get("Deployment", []):
        where = f"Deployment/{deployment['metadata']['name']}"
        spec = pod_spec(deployment)
        check(deployment["spec"].get("replicas") == 1, f"{where}: replicas is not 1")
        check(deployment["spec"].get("strategy", {}).get("type") == "Recreate", f"{where}: strategy is not Recreate")
        check_pod(where, spec, config)
        container = spec["containers"][0]
        check(container["args"][0] == "run", f"{where}: does not run the daemon")
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        check(ports.get("metrics") == listen_port, f"{where}: port 'metrics' is not the config's listen port {listen_port}")
        check(container.get("livenessProbe", {}).get("httpGet", {}).get("path") == "/healthz", f"{where}: liveness not on /healthz")
        check(container.get("readinessProbe", {}).get("httpGet", {}).get("path") == "/readyz", f"{where}: readiness not on /readyz")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        for service in by_kind.get("Service", []):
            check(
                all(labels.get(k) == v for k, v in service["spec"]["selector"].items()),
                f"Service/{service['metadata']['name']} does not select the Deployment's pods",
            )
            check(
                any(p.get("targetPort") in ("metrics", listen_port) for p in service["spec"]["ports"]),
                f"Service/{service['metadata']['name']} does not target the metrics port",
            )
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

    for cronjob in by_kind.get("CronJob", []):
        where = f"CronJob/{cronjob['metadata']['name']}"
        check(cronjob["spec"].get("concurrencyPolicy") == "Forbid", f"{where}: runs may overlap")
        spec = pod_spec(cronjob)
        check_pod(where, spec, config)
        check(spec["containers"][0]["args"][0] == "once", f"{where}: does not run `once`")

    check("Deployment" in by_kind or "CronJob" in by_kind, "no Deployment and no CronJob rendered")
    for error in errors:
        print(f"ERROR {error}", file=sys.stderr)
    kinds = ", ".join(f"{len(v)} {k}" for k, v in sorted(by_kind.items()))
    print(f"checked {kinds}: {len(errors)} problem(s)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
