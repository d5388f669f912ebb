#!/usr/bin/env python3
"""Keeps deploy/kubernetes/prometheusrule.yaml the same rules as deploy/prometheus/cloud-janitor-rules.yaml.

The plain rules file is the source. `--write` regenerates the PrometheusRule by embedding the rules
file's text under `spec:` (so comments and block scalars stay as written); without it, the script
exits 1 if the two files' groups differ once parsed.
"""

import argparse
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy/prometheus/cloud-janitor-rules.yaml"
PROMETHEUS_RULE = ROOT / "deploy/kubernetes/prometheusrule.yaml"

HEADER = """\
# GENERATED from deploy/prometheus/cloud-janitor-rules.yaml by
# `python3 tests/deploy/sync-prometheusrule.py --write`: edit that file, not this one.
# The same alerts as a PrometheusRule for the Prometheus Operator. The
# `release`-style label your Prometheus' ruleSelector expects may need adding.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: cloud-janitor
  namespace: cloud-janitor
  labels:
    app.kubernetes.io/name: cloud-janitor
spec:
"""


def rendered() -> str:
    lines = RULES.read_text(encoding="utf-8").splitlines()
    # Drop the rules file's own header comment; keep everything from `groups:` on.
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    return HEADER + body + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="regenerate the PrometheusRule")
    args = parser.parse_args()
    if args.write:
        PROMETHEUS_RULE.write_text(rendered(), encoding="utf-8")
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
        return 0
    plain = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    crd = yaml.safe_load(PROMETHEUS_RULE.read_text(encoding="utf-8"))
    if crd.get("kind") != "PrometheusRule" or crd["spec"]["groups"] != plain:
        print(
            f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}; "
            "run `python3 tests/deploy/sync-prometheusrule.py --write`",
            file=sys.stderr,
        )
        return 1
    print(f"{PROMETHEUS_RULE.relative_to(ROOT)} has the same {len(plain)} group(s) as {RULES.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
