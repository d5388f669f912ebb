#!/usr/bin/env python3
"""Turns the example ConfigMap and Secret into files the real binary can load, pointed at nothing.

    python3 tests/deploy/example-config.py RENDERED.yaml OUT_DIR

Writes OUT_DIR/config.toml, clouds.yaml and pve-token: the examples as shipped, except that every
endpoint is 127.0.0.1:1 (nothing listens there, so no request leaves the machine) and every path is
under OUT_DIR. `cloud-janitor plan --config OUT_DIR/config.toml` must then exit 2 (the clouds could
not be reached), not 64 (bad config): the example config is one the binary accepts.
"""

import pathlib
import sys

import yaml

NOWHERE = "127.0.0.1:1"


def main() -> int:
    rendered, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    docs = [d for d in yaml.safe_load_all(rendered.read_text(encoding="utf-8")) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"]
    secret = next(d for d in docs if d["kind"] == "Secret")["stringData"]

    clouds = yaml.safe_load(secret["clouds.yaml"])
    for entry in clouds["clouds"].values():
        entry["auth"]["auth_url"] = f"http://{NOWHERE}/v3"
    (out / "clouds.yaml").write_text(yaml.safe_dump(clouds), encoding="utf-8")
    (out / "pve-token").write_text(secret["pve-token"], encoding="utf-8")

    replacements = {
        "https://pve.example:8006": f"https://{NOWHERE}",
        "/etc/openstack/clouds.yaml": str(out / "clouds.yaml"),
        "/run/secrets/cloud-janitor/pve-token": str(out / "pve-token"),
        "/var/lib/cloud-janitor/history.db": str(out / "history.db"),
    }
    for old, new in replacements.items():
        if old not in config:
            print(f"the example config no longer has {old!r}; update {__file__}", file=sys.stderr)
            return 1
        config = config.replace(old, new)
    (out / "config.toml").write_text(config, encoding="utf-8")
    print(f"wrote {out}/config.toml, clouds.yaml, pve-token (endpoints at {NOWHERE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
