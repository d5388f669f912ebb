//! What a pass did and what stayed, for people (a table), machines (JSON) and the exit code; and the
//! dry-run plan as a table, JSON or Graphviz dot.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, Utc};
use petgraph::visit::EdgeRef;
use serde::Serialize;

use crate::model::{LeakSign, ResourceKey};
use crate::outcome::{LeftReason, Outcome};
use crate::pass::Mode;
use crate::planner::{Disposition, Plan};
use crate::selection::Verdict;

/// Whether a cloud could be listed this pass.
#[derive(Debug, Clone, Serialize)]
pub struct CloudStatus {
    pub name: String,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportItem {
    pub key: ResourceKey,
    pub name: String,
    pub born: Option<DateTime<Utc>>,
    pub status: Outcome,
    /// Times a conflict sent it back into the queue this pass.
    pub requeues: u32,
    /// For a leftover: in how many passes it has stayed, this one included (from the state file).
    pub passes_left: u32,
    /// Why it counts as a suspected leak, when it does (reported, or deleted where opted in).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suspected_leak: Option<LeakSign>,
}

/// The overall result of a pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PassResult {
    /// Everything selected is gone.
    Clean,
    /// Selected resources stayed.
    Leftovers,
    /// At least one cloud could not be listed.
    Failed,
}

impl PassResult {
    pub fn as_str(self) -> &'static str {
        match self {
            PassResult::Clean => "clean",
            PassResult::Leftovers => "leftovers",
            PassResult::Failed => "failed",
        }
    }

    /// The exit code of `once`: 0 clean, 1 leftovers, 2 could not run.
    pub fn exit_code(self) -> i32 {
        match self {
            PassResult::Clean => 0,
            PassResult::Leftovers => 1,
            PassResult::Failed => 2,
        }
    }
}

/// The report of one pass.
#[derive(Debug, Clone, Serialize)]
pub struct PassReport {
    pub pass: u64,
    /// `report_only` when the pass deleted nothing by design.
    pub mode: Mode,
    pub started: DateTime<Utc>,
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    pub clouds: Vec<CloudStatus>,
    /// Every listed resource, sorted by key: where the report finds the names it shows next to ids.
    pub items: Vec<ReportItem>,
}

#[derive(Default)]
struct Row {
    deleted: usize,
    gone: usize,
    left: usize,
    would_delete: usize,
    skipped: usize,
    requeues: u32,
}

impl PassReport {
    pub fn result(&self) -> PassResult {
        if self.clouds.iter().any(|c| c.error.is_some()) {
            PassResult::Failed
        } else if self.left().next().is_some() {
            PassResult::Leftovers
        } else {
            PassResult::Clean
        }
    }

    /// The selected resources that stayed, with why.
    pub fn left(&self) -> impl Iterator<Item = (&ReportItem, &LeftReason)> {
        self.items.iter().filter_map(|i| match &i.status {
            Outcome::Left(reason) => Some((i, reason)),
            _ => None,
        })
    }

    fn named(&self, key: &ResourceKey) -> String {
        let item = self.items.binary_search_by(|item| item.key.cmp(key));
        named(key, item.ok().map(|at| self.items[at].name.as_str()))
    }

    /// The human report: a line of totals, a table per cloud and kind, then every leftover with why.
    pub fn render_table(&self) -> String {
        let mut rows: BTreeMap<(String, &'static str), Row> = BTreeMap::new();
        for item in &self.items {
            let row = rows
                .entry((item.key.cloud.clone(), item.key.kind.as_str()))
                .or_default();
            row.requeues += item.requeues;
            match item.status {
                Outcome::Deleted => row.deleted += 1,
                Outcome::AlreadyGone | Outcome::RemovedWithOwner => row.gone += 1,
                Outcome::Left(_) => row.left += 1,
                Outcome::WouldDelete => row.would_delete += 1,
                Outcome::Skipped(_) => row.skipped += 1,
            }
        }
        let total = |f: fn(&Row) -> usize| rows.values().map(f).sum::<usize>();
        let requeues: u32 = rows.values().map(|r| r.requeues).sum();
        let mut out = String::new();
        let report_only = self.mode == Mode::ReportOnly;
        if report_only {
            let _ = writeln!(
                out,
                "pass {} {} in {:.1}s (report-only, nothing deleted): {} would be deleted, {} left, {} not selected",
                self.pass,
                self.result().as_str(),
                self.duration.as_secs_f64(),
                total(|r| r.would_delete),
                total(|r| r.left),
                total(|r| r.skipped),
            );
        } else {
            let _ = writeln!(
                out,
                "pass {} {} in {:.1}s: {} deleted, {} already gone, {} left, {} not selected, {} conflicts requeued",
                self.pass,
                self.result().as_str(),
                self.duration.as_secs_f64(),
                total(|r| r.deleted),
                total(|r| r.gone),
                total(|r| r.left),
                total(|r| r.skipped),
                requeues
            );
        }
        for cloud in self.clouds.iter().filter(|c| c.error.is_some()) {
            let _ = writeln!(
                out,
                "cloud {} could not be listed: {}",
                cloud.name,
                cloud.error.as_deref().unwrap_or("")
            );
        }
        // Report-only: the first column counts what would go, and nothing can be gone or requeued.
        let (first, gone, requeued) = if report_only {
            ("WOULD", "", "")
        } else {
            ("DELETED", "GONE", "REQUEUES")
        };
        let _ = writeln!(
            out,
            "\n{:<16} {:<18} {:>8} {:>8} {:>6} {:>9} {:>9}",
            "CLOUD", "KIND", first, gone, "LEFT", "SKIPPED", requeued
        );
        for ((cloud, kind), row) in &rows {
            let line = if report_only {
                format!(
                    "{cloud:<16} {kind:<18} {:>8} {:>8} {:>6} {:>9}",
                    row.would_delete, "", row.left, row.skipped
                )
            } else {
                format!(
                    "{cloud:<16} {kind:<18} {:>8} {:>8} {:>6} {:>9} {:>9}",
                    row.deleted, row.gone, row.left, row.skipped, row.requeues
                )
            };
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let left: Vec<_> = self.left().collect();
        if !left.is_empty() {
            let _ = writeln!(out, "\nLeft in place:");
            for (item, reason) in left {
                let why = reason.sentence(|key| self.named(key)) + &repeated(item.passes_left);
                let _ = writeln!(out, "{}", row(&item.key, &item.name, why));
            }
        }
        self.render_suspected_leaks(&mut out);
        self.render_malformed_expiry_tags(&mut out);
        out
    }

    /// The suspected leaks: untagged, looking leaked in two passes in a row and older than
    /// `leak_min_age`; what became of each (reported only, or deleted where the config opts in).
    fn render_suspected_leaks(&self, out: &mut String) {
        let suspected: Vec<(&ReportItem, LeakSign)> = self
            .items
            .iter()
            .filter_map(|item| item.suspected_leak.map(|sign| (item, sign)))
            .collect();
        if suspected.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nSuspected leaks ({}): untagged, looked leaked in {} passes in a row, older than leak_min_age:",
            suspected.len(),
            crate::selection::LEAK_SIGHTINGS
        );
        for (item, sign) in suspected {
            let fate = match &item.status {
                Outcome::Skipped(_) => "reported only (delete_suspected_leaks opts in per kind)".to_string(),
                Outcome::WouldDelete => "would be deleted (report-only mode)".to_string(),
                other => other.to_string(),
            };
            let what = format!("{}: {fate}", sign.describe());
            let _ = writeln!(out, "{}", row(&item.key, &item.name, what));
        }
    }

    /// Resources whose expiry tag could not be read: never selected on a guess, so they stay until
    /// someone fixes the tag.
    fn render_malformed_expiry_tags(&self, out: &mut String) {
        let malformed: Vec<(&ReportItem, &crate::expiry::MalformedExpiry)> = self
            .items
            .iter()
            .filter_map(|item| match &item.status {
                Outcome::Skipped(Verdict::MalformedExpiry(malformed)) => Some((item, malformed)),
                _ => None,
            })
            .collect();
        if malformed.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nExpiry tags not understood ({}); these resources are not selected until the tag is fixed:",
            malformed.len()
        );
        for (item, malformed) in malformed {
            let _ = writeln!(out, "{}", row(&item.key, &item.name, malformed));
        }
    }
}

/// One resource's line in a list of the report or the plan: cloud, kind, id and name in columns,
/// then what is said of it.
fn row(key: &ResourceKey, name: &str, said: impl std::fmt::Display) -> String {
    let line = format!(
        "  {:<12} {:<16} {:<38} {:<24} {said}",
        key.cloud,
        key.kind.as_str(),
        key.id,
        name
    );
    line.trim_end().to_string()
}

/// A resource as people read it: its kind and id, and its name when it has one.
pub(crate) fn named(key: &ResourceKey, name: Option<&str>) -> String {
    match name.filter(|n| !n.is_empty()) {
        Some(name) => format!("{key} ({name})"),
        None => key.to_string(),
    }
}

/// " (left in N passes)" once a resource has stayed more than once: repeated failures stand out.
fn repeated(passes_left: u32) -> String {
    if passes_left > 1 {
        format!(" (left in {passes_left} passes)")
    } else {
        String::new()
    }
}

/// The dry run as a table: what would be deleted, in order, what is held back and why, and how many
/// resources were not selected.
pub fn plan_table(plan: &Plan) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Would delete, in this order ({}):", plan.order.len());
    for (position, &node) in plan.order.iter().enumerate() {
        let n = &plan.graph[node];
        let how = match &n.disposition {
            Disposition::AwaitRemoval { owner } => format!("  (removed with {owner})"),
            _ => String::new(),
        };
        let r = &n.resource;
        let _ = writeln!(
            out,
            "  {:>4}. {:<12} {:<16} {:<38} {}{how}",
            position + 1,
            r.key.cloud,
            r.key.kind.as_str(),
            r.key.id,
            r.name
        );
    }
    let held: Vec<_> = plan
        .nodes()
        .filter_map(|n| match &n.disposition {
            Disposition::Held { reason } => Some((n, reason)),
            _ => None,
        })
        .collect();
    if !held.is_empty() {
        let _ = writeln!(out, "\nSelected but held back ({}):", held.len());
        // Name the users too, as the pass report does: "in use by port 4f2a... (keep-port)".
        let names: HashMap<&ResourceKey, &str> = plan
            .nodes()
            .map(|n| (&n.resource.key, n.resource.name.as_str()))
            .collect();
        for (n, reason) in held {
            let r = &n.resource;
            let why = reason.sentence(|key| named(key, names.get(key).copied()));
            let _ = writeln!(out, "{}", row(&r.key, &r.name, why));
        }
    }
    let mut skipped: BTreeMap<String, usize> = BTreeMap::new();
    for n in plan.nodes() {
        if let (Some(verdict), Disposition::Keep | Disposition::AwaitRemoval { .. }) =
            (&n.verdict, &n.disposition)
        {
            *skipped.entry(verdict.describe()).or_default() += 1;
        }
    }
    if !skipped.is_empty() {
        let _ = writeln!(out, "\nNot selected (never touched):");
        for (why, count) in skipped {
            let _ = writeln!(out, "  {count:>5}  {why}");
        }
    }
    out
}

#[derive(Serialize)]
struct JsonNode<'a> {
    cloud: &'a str,
    kind: &'static str,
    id: &'a str,
    name: &'a str,
    tags: &'a [String],
    status: &'a str,
    selection: String,
    #[serde(flatten)]
    disposition: &'a Disposition,
    /// Position in the delete order, when it would be deleted.
    order: Option<usize>,
    uses: Vec<String>,
}

/// The dry run as JSON: every node with its selection verdict, disposition, order and edges.
pub fn plan_json(plan: &Plan) -> String {
    let position: HashMap<_, _> = plan.order.iter().enumerate().map(|(i, &n)| (n, i + 1)).collect();
    let nodes: Vec<JsonNode> = plan
        .graph
        .node_indices()
        .map(|index| {
            let n = &plan.graph[index];
            let r = &n.resource;
            JsonNode {
                cloud: &r.key.cloud,
                kind: r.key.kind.as_str(),
                id: &r.key.id,
                name: &r.name,
                tags: &r.tags,
                status: &r.status,
                selection: n.verdict.as_ref().map_or_else(
                    || "not listed (a user of a listed resource)".to_string(),
                    |v| v.describe(),
                ),
                disposition: &n.disposition,
                order: position.get(&index).copied(),
                uses: plan
                    .graph
                    .edges(index)
                    .map(|e| plan.graph[e.target()].resource.key.to_string())
                    .collect(),
            }
        })
        .collect();
    serde_json::to_string_pretty(&nodes).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// The dependency graph in Graphviz dot: `dot -Tsvg` draws it. Red: would be deleted; orange: held
/// back; grey: not selected. An arrow `a -> b` reads "a uses b": a goes first.
pub fn plan_dot(plan: &Plan) -> String {
    let mut out = String::from("digraph cloud_janitor {\n  rankdir=LR;\n  node [shape=box, style=\"rounded,filled\", fontname=\"Helvetica\"];\n");
    for index in plan.graph.node_indices() {
        let n = &plan.graph[index];
        let (color, note) = match &n.disposition {
            Disposition::Delete => ("#f4a6a6", "delete".to_string()),
            Disposition::AwaitRemoval { .. } => ("#f9d6a5", "removed with owner".to_string()),
            Disposition::Held { reason } => ("#ffd966", reason.to_string()),
            Disposition::Keep => ("#dddddd", "keep".to_string()),
        };
        let r = &n.resource;
        let label = format!(
            "{}\\n{}\\n{}\\n[{}]",
            r.key.kind,
            escape(&r.name),
            escape(&r.key.id),
            escape(&note)
        );
        let _ = writeln!(
            out,
            "  n{} [label=\"{label}\", fillcolor=\"{color}\"];",
            index.index()
        );
    }
    for edge in plan.graph.edge_references() {
        let _ = writeln!(out, "  n{} -> n{};", edge.source().index(), edge.target().index());
    }
    out.push_str("}\n");
    out
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Kind, Resource};

    fn plan() -> Plan {
        let sg = ResourceKey::new("c", Kind::SecurityGroup, "sg-1");
        let mut user = Resource::new(ResourceKey::new("c", Kind::Port, "keep-port"), "keep \"port\"");
        user.references = vec![sg.clone()];
        let mut port = Resource::new(ResourceKey::new("c", Kind::Port, "ci-port"), "ci-port");
        port.references = vec![sg.clone()];
        let group = Resource::new(sg, "ci-sg");
        Plan::build(
            vec![user, port, group],
            vec![
                Verdict::NotMatched("tags_all"),
                Verdict::Selected,
                Verdict::Selected,
            ],
        )
    }

    #[test]
    fn the_plan_table_lists_the_order_what_is_held_and_why_and_what_is_not_selected() {
        let table = plan_table(&plan());
        assert!(table.contains("Would delete, in this order (1):"), "{table}");
        assert!(table.contains("ci-port"), "{table}");
        assert!(
            table.contains("Selected but held back (1):")
                && table.contains("in use by port keep-port (keep \"port\")"),
            "{table}"
        );
        assert!(table.contains("1  not matched: tags_all"), "{table}");
    }

    #[test]
    fn a_resource_left_again_and_again_says_so_in_the_report() {
        let key = ResourceKey::new("c", Kind::Server, "vm-1");
        let item = |passes_left| ReportItem {
            key: key.clone(),
            name: "ci-vm".into(),
            born: None,
            status: Outcome::Left(LeftReason::Busy {
                state: "locked".into(),
            }),
            requeues: 0,
            passes_left,
            suspected_leak: None,
        };
        let report = |passes_left| PassReport {
            mode: crate::pass::Mode::Delete,
            pass: 4,
            started: Utc::now(),
            duration: Duration::from_secs(1),
            clouds: vec![CloudStatus {
                name: "c".into(),
                error: None,
            }],
            items: vec![item(passes_left)],
        };
        assert!(report(3)
            .render_table()
            .contains("busy: locked (left in 3 passes)"));
        assert!(!report(1).render_table().contains("left in"));
        assert_eq!(report(1).result(), PassResult::Leftovers);
    }

    #[test]
    fn the_dot_graph_has_a_node_per_resource_an_edge_per_use_and_escapes_names() {
        let dot = plan_dot(&plan());
        assert!(
            dot.starts_with("digraph cloud_janitor {") && dot.trim_end().ends_with('}'),
            "{dot}"
        );
        assert_eq!(dot.matches("fillcolor=").count(), 3, "{dot}");
        assert_eq!(dot.matches(" -> n").count(), 2, "{dot}");
        assert!(dot.contains("keep \\\"port\\\""), "quotes escaped: {dot}");
        assert!(dot.contains("in use by port keep-port"), "{dot}");
    }

    #[test]
    fn the_plan_json_gives_each_node_its_action_order_and_uses() {
        let nodes: serde_json::Value = serde_json::from_str(&plan_json(&plan())).unwrap();
        let by_id = |id: &str| {
            nodes
                .as_array()
                .unwrap()
                .iter()
                .find(|n| n["id"] == id)
                .unwrap()
                .clone()
        };
        assert_eq!(by_id("ci-port")["action"], "delete");
        assert_eq!(by_id("ci-port")["order"], 1);
        assert_eq!(by_id("sg-1")["action"], "held");
        assert_eq!(by_id("keep-port")["action"], "keep");
        assert_eq!(by_id("keep-port")["uses"][0], "security_group sg-1");
    }

    /// A plan with every disposition: a server deleted with the port Nova made for it, a group held
    /// by an unselected port, a cycle, a guarded network and an unselected volume.
    fn every_disposition() -> Plan {
        let key = |kind, id: &str| ResourceKey::new("ci", kind, id);
        let mut server = Resource::new(key(Kind::Server, "srv-1"), "ci-vm");
        server.tags = vec!["ci-job".into()];
        let mut owned = Resource::new(key(Kind::Port, "port-nova"), "");
        owned.removal = crate::model::Removal::WithOwner(key(Kind::Server, "srv-1"));
        owned.used_by = vec![key(Kind::Server, "srv-1")];
        owned.references = vec![key(Kind::Network, "net-1")];
        let mut keep_port = Resource::new(key(Kind::Port, "port-keep"), "keep-port");
        keep_port.references = vec![key(Kind::SecurityGroup, "sg-1")];
        let sg = Resource::new(key(Kind::SecurityGroup, "sg-1"), "ci-sg");
        let net = Resource::new(key(Kind::Network, "net-1"), "ci-net");
        let mut a = Resource::new(key(Kind::Port, "port-a"), "loop-a");
        a.references = vec![key(Kind::Port, "port-b")];
        let mut b = Resource::new(key(Kind::Port, "port-b"), "loop-b");
        b.references = vec![key(Kind::Port, "port-a")];
        let mut public = Resource::new(key(Kind::Network, "net-public"), "public");
        public.guard = Some(crate::model::Guard::ExternalNetwork);
        let volume = Resource::new(key(Kind::Volume, "vol-1"), "data");
        Plan::build(
            vec![server, owned, keep_port, sg, net, a, b, public, volume],
            vec![
                Verdict::Selected,
                Verdict::NotMatched("tags_all"),
                Verdict::NotMatched("tags_all"),
                Verdict::Selected,
                Verdict::Selected,
                Verdict::Selected,
                Verdict::Selected,
                Verdict::Guarded(crate::model::Guard::ExternalNetwork),
                Verdict::TooYoung,
            ],
        )
    }

    #[test]
    fn the_plan_renderings_are_pinned() {
        let plan = every_disposition();
        insta::assert_snapshot!("plan_table", plan_table(&plan));
        insta::assert_snapshot!("plan_json", plan_json(&plan));
        insta::assert_snapshot!("plan_dot", plan_dot(&plan));
    }

    /// A report with every outcome, a failed cloud and a resource left for the third time.
    fn every_outcome() -> PassReport {
        let key = |kind, id: &str| ResourceKey::new("ci", kind, id);
        let started = DateTime::parse_from_rfc3339("2026-12-05T18:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let item = |kind, id: &str, name: &str, status, requeues, passes_left| ReportItem {
            key: key(kind, id),
            name: name.into(),
            born: Some(started - chrono::Duration::hours(3)),
            status,
            requeues,
            passes_left,
            suspected_leak: None,
        };
        let items = vec![
            item(Kind::Server, "srv-1", "ci-vm", Outcome::Deleted, 0, 0),
            item(Kind::Port, "port-1", "", Outcome::AlreadyGone, 0, 0),
            item(
                Kind::SecurityGroup,
                "sg-1",
                "ci-sg",
                Outcome::Left(LeftReason::InUse {
                    by: key(Kind::Port, "port-keep"),
                }),
                0,
                3,
            ),
            item(
                Kind::Volume,
                "vol-1",
                "ci-data",
                Outcome::Left(LeftReason::Conflict {
                    message: "HTTP 409: volume is busy".into(),
                }),
                4,
                1,
            ),
            item(
                Kind::Network,
                "net-1",
                "ci-net",
                Outcome::Left(LeftReason::Blocked {
                    by: key(Kind::Volume, "vol-1"),
                }),
                0,
                1,
            ),
            item(
                Kind::Port,
                "port-keep",
                "keep-port",
                Outcome::Skipped(Verdict::Protected),
                0,
                0,
            ),
            ReportItem {
                suspected_leak: Some(LeakSign::FloatingIpWithoutPort),
                ..item(
                    Kind::FloatingIp,
                    "fip-9",
                    "172.24.4.9",
                    Outcome::Skipped(Verdict::SuspectedLeak(LeakSign::FloatingIpWithoutPort)),
                    0,
                    0,
                )
            },
            ReportItem {
                suspected_leak: Some(LeakSign::VolumeWithoutAttachment),
                ..item(Kind::Volume, "vol-9", "scratch", Outcome::Deleted, 0, 0)
            },
            item(
                Kind::Port,
                "port-9",
                "ci-lb-port",
                Outcome::Skipped(Verdict::MalformedExpiry(crate::expiry::MalformedExpiry {
                    tag: "ttl-6".into(),
                    problem: "`6` has no unit".into(),
                })),
                0,
                0,
            ),
        ];
        // As `build_report` leaves them: sorted by key.
        let mut items = items;
        items.sort_by(|a, b| a.key.cmp(&b.key));
        PassReport {
            mode: crate::pass::Mode::Delete,
            pass: 7,
            started,
            duration: Duration::from_millis(12_345),
            clouds: vec![
                CloudStatus {
                    name: "ci".into(),
                    error: None,
                },
                CloudStatus {
                    name: "lab".into(),
                    error: Some("authentication against https://pve:8006 failed: 401".into()),
                },
            ],
            items,
        }
    }

    #[test]
    fn the_report_renderings_are_pinned() {
        let report = every_outcome();
        assert_eq!(report.result(), PassResult::Failed);
        insta::assert_snapshot!("report_table", report.render_table());
        insta::assert_snapshot!("report_json", serde_json::to_string_pretty(&report).unwrap());
    }
}
