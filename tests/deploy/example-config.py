#!/usr/bin/env python3
"""Turns the shipped config and the example credentials into files the real binary can load, pointed at nothing.

    python3 tests/deploy/example-config.py VARIANT.yaml CREDENTIALS.yaml OUT_DIR

VARIANT.yaml is a `kubectl kustomize` render with the ConfigMap (deploy/kubernetes/base/config.toml);
CREDENTIALS.yaml the render of deploy/kubernetes/credentials with its *.example files. Writes
OUT_DIR/config.toml and every key of the Secret as a file: the examples as shipped, except that every
endpoint is 127.0.0.1:1 (nothing listens there, so no request leaves the machine) and every path is
under OUT_DIR. `cloud-janitor plan --config OUT_DIR/config.toml` must then exit 2 (the clouds could
not be reached), not 64 (bad config): the shipped config is one the binary accepts.
"""

import base64
import pathlib
import sys

import yaml

NOWHERE = "127.0.0.1:1"


def main() -> int:
    variant, credentials, out = (pathlib.Path(a) for a in sys.argv[1:4])
    out.mkdir(parents=True, exist_ok=True)
    docs = [d for d in yaml.safe_load_all(variant.read_text(encoding="utf-8")) if d]
    config = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["config.toml"]
    secret = next(d for d in yaml.safe_load_all(credentials.read_text(encoding="utf-8")) if d and d["kind"] == "Secret")
    files = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}

    clouds = yaml.safe_load(files["clouds.yaml"])
    for entry in clouds["clouds"].values():
        entry["auth"]["auth_url"] = f"http://{NOWHERE}/v3"
    files["clouds.yaml"] = yaml.safe_dump(clouds)
    for key, text in files.items():
        (out / key).write_text(text, encoding="utf-8")

    replacements = {
        "https://pve.example:8006": f"https://{NOWHERE}",
        "/run/secrets/cloud-janitor/": f"{out}/",
        "/var/lib/cloud-janitor/history.db": str(out / "history.db"),
    }
    for old, new in replacements.items():
        if old not in config:
            print(f"the shipped config no longer has {old!r}; update {__file__}", file=sys.stderr)
            return 1
        config = config.replace(old, new)
    (out / "config.toml").write_text(config, encoding="utf-8")
    print(f"wrote {out}/config.toml and {', '.join(sorted(files))} (endpoints at {NOWHERE})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
