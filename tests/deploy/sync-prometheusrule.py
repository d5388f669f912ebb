#!/usr/bin/env python3
"""Keeps each PrometheusRule the same rules as its plain rules file, and every runbook_url true.

    python3 tests/deploy/sync-prometheusrule.py           # check; exit 1 on a difference
    python3 tests/deploy/sync-prometheusrule.py --write   # regenerate the PrometheusRules

The plain rules files in deploy/prometheus/ are the source. `--write` regenerates each PrometheusRule
by embedding its rules file's text under `spec:` (so comments and block scalars stay as written).
The check also asserts what no schema does: every alert has a runbook_url at RUNBOOK_BASE whose
anchor is a heading of docs/runbook.md, every section there belongs to an alert, and an alert that
both files have (same name) says the same in both.
"""

import argparse
import pathlib
import re
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNBOOK = ROOT / "docs/runbook.md"
# The one placeholder host of every runbook_url (README, "Alerts").
RUNBOOK_BASE = "https://cloud-janitor.invalid/docs/runbook.md#"
# plain rules file -> the PrometheusRule generated from it
PAIRS = {
    ROOT / "deploy/prometheus/cloud-janitor-rules.yaml": ROOT
    / "deploy/kubernetes/components/monitoring/prometheusrule.yaml",
    ROOT / "deploy/prometheus/cloud-janitor-once-rules.yaml": ROOT
    / "deploy/kubernetes/components/monitoring-once/prometheusrule.yaml",
}

HEADER = """\
# GENERATED from {rules} by
# `python3 tests/deploy/sync-prometheusrule.py --write`: edit that file, not this one.
# The same alerts as a PrometheusRule for the Prometheus Operator.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {name}
  namespace: cloud-janitor
  labels:
    app.kubernetes.io/name: cloud-janitor
    # What your Prometheus' ruleSelector matches (kube-prometheus-stack: its release name).
    release: kube-prometheus-stack
spec:
"""


def rendered(rules: pathlib.Path) -> str:
    lines = rules.read_text(encoding="utf-8").splitlines()
    # Drop the rules file's own header comment; keep everything from `groups:` on.
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = "\n".join(("  " + line) if line.strip() else "" for line in lines[start:])
    name = rules.stem.removesuffix("-rules")
    return HEADER.format(rules=rules.relative_to(ROOT), name=name) + body + "\n"


def anchors(markdown: str) -> list[str]:
    """GitHub's and GitLab's heading anchors: lower case, punctuation dropped, spaces as '-'."""
    found = []
    for line in markdown.splitlines():
        match = re.match(r"#{1,6}\s+(.*)", line)
        if match:
            text = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            found.append(text.replace(" ", "-"))
    return found


def check_runbooks(alerts: list[dict]) -> list[str]:
    problems = []
    sections = set(anchors(RUNBOOK.read_text(encoding="utf-8")))
    named = set()
    for rule in alerts:
        url = rule.get("annotations", {}).get("runbook_url", "")
        if not url.startswith(RUNBOOK_BASE):
            problems.append(f"{rule['alert']}: runbook_url {url!r} does not start with {RUNBOOK_BASE}")
            continue
        anchor = url[len(RUNBOOK_BASE):]
        named.add(anchor)
        if anchor not in sections:
            problems.append(f"{rule['alert']}: runbook_url anchor #{anchor} is no heading of {RUNBOOK.relative_to(ROOT)}")
    alert_sections = {s for s in sections if s.startswith("cloudjanitor")}
    for orphan in sorted(alert_sections - named):
        problems.append(f"{RUNBOOK.relative_to(ROOT)} has a section #{orphan} that no alert points at")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--write", action="store_true", help="regenerate the PrometheusRules")
    args = parser.parse_args()
    if args.write:
        for rules, prometheus_rule in PAIRS.items():
            prometheus_rule.write_text(rendered(rules), encoding="utf-8")
            print(f"wrote {prometheus_rule.relative_to(ROOT)}")
        return 0
    problems = []
    alerts = []
    for rules, prometheus_rule in PAIRS.items():
        plain = yaml.safe_load(rules.read_text(encoding="utf-8"))["groups"]
        crd = yaml.safe_load(prometheus_rule.read_text(encoding="utf-8"))
        if crd.get("kind") != "PrometheusRule" or crd["spec"]["groups"] != plain:
            problems.append(
                f"{prometheus_rule.relative_to(ROOT)} differs from {rules.relative_to(ROOT)}; "
                "run `python3 tests/deploy/sync-prometheusrule.py --write`"
            )
        else:
            print(f"{prometheus_rule.relative_to(ROOT)} has the same {len(plain)} group(s) as {rules.relative_to(ROOT)}")
        alerts += [r for group in plain for r in group["rules"] if "alert" in r]
    problems += check_runbooks(alerts)
    by_name: dict[str, dict] = {}
    for rule in alerts:
        first = by_name.setdefault(rule["alert"], rule)
        if first is not rule and (first["annotations"], first["labels"], first["for"]) != (
            rule["annotations"],
            rule["labels"],
            rule["for"],
        ):
            problems.append(f"{rule['alert']}: the two rules files differ in its annotations, labels or `for`")
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    print(f"{len(alerts)} alerts, each with a runbook section: {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
