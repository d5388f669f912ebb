//! What `cloud-janitor explain` says about one resource: each selection rule with the value it saw,
//! the guards, what the resource uses and what uses it, its place in the plan, its history, and the
//! verdict in one sentence. Pure: built from a plan, the cloud's selection rules and the history;
//! the command (`commands/explain.rs`) does the discovery and the printing.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use serde::Serialize;

use crate::history::Record;
use crate::model::{Guard, ResourceKey};
use crate::outcome::LeftReason;
use crate::pass::Mode;
use crate::planner::{Disposition, Plan};
use crate::selection::{human, passes, time, History, RuleCheck, Selector, Verdict};

/// Everything `explain` shows of one resource.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    pub cloud: String,
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    pub status: String,
    pub project: Option<String>,
    pub tags: Vec<String>,
    pub created: Option<DateTime<Utc>>,
    /// The verdict in one sentence.
    pub verdict: String,
    /// The selection's verdict, as reports show it.
    pub selection: String,
    pub rules: Vec<RuleCheck>,
    /// What it uses: each is deleted after it.
    pub uses: Vec<Neighbour>,
    /// What uses it: each must be gone before it is deleted.
    pub used_by: Vec<Neighbour>,
    pub plan: PlanPlace,
    /// What the janitor remembers of it; `None` when no pass has seen it.
    pub history: Option<Record>,
}

/// A resource next to the one explained.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Neighbour {
    pub kind: &'static str,
    pub id: String,
    pub name: String,
    /// Whether the janitor may delete it.
    pub selected: bool,
    /// Its selection verdict, or why it has none.
    pub selection: String,
    /// What the plan does with it: `delete`, `await_removal`, `keep` or `held`.
    pub action: &'static str,
}

/// Where the resource stands in the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PlanPlace {
    /// Deleted at `position` of `of` (counting from 1), after every resource in `after`.
    Delete {
        position: usize,
        of: usize,
        /// Everything that must be gone first, in the plan's order.
        after: Vec<String>,
    },
    /// Removed by its owner; the janitor waits for it to disappear.
    AwaitRemoval { owner: String },
    /// Never touched.
    Keep,
    /// Selected, but held back.
    Held { reason: String },
}

/// A resource as people read it: kind, id and, when it has one, name.
fn named(plan: &Plan, key: &ResourceKey) -> String {
    let name = plan.node(key).map(|n| plan.graph[n].resource.name.as_str());
    crate::report::named(key, name)
}

fn action(disposition: &Disposition) -> &'static str {
    match disposition {
        Disposition::Delete => "delete",
        Disposition::AwaitRemoval { .. } => "await_removal",
        Disposition::Keep => "keep",
        Disposition::Held { .. } => "held",
    }
}

fn neighbour(plan: &Plan, node: NodeIndex) -> Neighbour {
    let n = &plan.graph[node];
    Neighbour {
        kind: n.resource.key.kind.as_str(),
        id: n.resource.key.id.clone(),
        name: n.resource.name.clone(),
        selected: n.is_selected(),
        selection: n.verdict.as_ref().map_or_else(
            || "not listed (another project's, or filtered out by the API)".to_string(),
            Verdict::describe,
        ),
        action: action(&n.disposition),
    }
}

/// `a`, `a and b`, `a, b and c`.
fn and_list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Every actionable resource that must be gone before `node` is attempted, in the plan's order.
fn deleted_before(plan: &Plan, node: NodeIndex) -> Vec<NodeIndex> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![node];
    while let Some(current) = stack.pop() {
        for user in plan.graph.neighbors_directed(current, Direction::Incoming) {
            if plan.graph[user].disposition.is_actionable() && seen.insert(user) {
                stack.push(user);
            }
        }
    }
    plan.order.iter().copied().filter(|n| seen.contains(n)).collect()
}

/// The verdict of a resource the plan does not touch, in one sentence.
fn kept_sentence(verdict: Option<&Verdict>, kind: &str) -> String {
    let Some(verdict) = verdict else {
        return "not listed by its provider: known only as a user of what it uses, never touched".into();
    };
    match verdict {
        Verdict::Guarded(guard) => format!("never deleted: {}", guard_sentence(*guard)),
        Verdict::Protected => "never deleted: it carries the protect tag".into(),
        Verdict::NotMatched(rule) => format!("not deleted: not selected ({rule} does not match)"),
        Verdict::TooYoung => "not deleted yet: selected by its tags, but younger than min_age".into(),
        Verdict::Unconfirmed { seen, required } => {
            format!("not deleted yet: seen in {seen} of the {required} passes in a row it needs")
        }
        Verdict::NotExpired { tag, at } => format!(
            "not deleted before {}: its expiry tag {tag} has not passed, whatever min_age says",
            time(*at)
        ),
        Verdict::MalformedExpiry(malformed) => {
            format!("not deleted: {malformed}; it is never guessed at, so fix or remove the tag")
        }
        // Only a cloud that looks for suspected leaks judges one so; deleting them is opt-in.
        Verdict::SuspectedLeak(sign) => format!(
            "not deleted: a suspected leak ({}), reported only; add \"{kind}\" to \
             delete_suspected_leaks to delete such leaks",
            sign.describe()
        ),
        // A selected resource is never kept: the plan deletes it or holds it.
        Verdict::Selected | Verdict::Expired { .. } | Verdict::Leaked(_) => {
            "selected, but not in the plan".into()
        }
    }
}

fn guard_sentence(guard: Guard) -> String {
    match guard {
        Guard::OtherProject => "it belongs to another project".into(),
        Guard::DefaultSecurityGroup => "it is the project's default security group".into(),
        other => format!("it is a {}", other.as_str()),
    }
}

/// Why the user holding a resource stays, for "held: in use by X, which ...".
fn why_user_stays(plan: &Plan, user: &ResourceKey) -> String {
    let Some(node) = plan.node(user) else {
        return "which is not in the plan".into();
    };
    let n = &plan.graph[node];
    match (&n.verdict, &n.disposition) {
        (None, _) => "which is not listed (another project's, or filtered out by the API)".into(),
        (Some(_), Disposition::Held { .. }) => "which is held too".into(),
        (Some(verdict), _) => format!("which is not selected ({})", verdict.describe()),
    }
}

/// Builds the explanation of `node`. `history` is what selection saw (the dry run's count),
/// `record` the whole history record.
pub fn explain(
    plan: &Plan,
    node: NodeIndex,
    selector: &Selector,
    history: Option<History>,
    record: Option<Record>,
    mode: Mode,
    now: DateTime<Utc>,
) -> Explanation {
    let n = &plan.graph[node];
    let resource = &n.resource;
    let kind = resource.key.kind.as_str();
    let mut uses: Vec<NodeIndex> = plan
        .graph
        .edges_directed(node, Direction::Outgoing)
        .map(|e| e.target())
        .collect();
    let mut used_by: Vec<NodeIndex> = plan
        .graph
        .edges_directed(node, Direction::Incoming)
        .map(|e| e.source())
        .collect();
    let by_key = |a: &NodeIndex, b: &NodeIndex| plan.graph[*a].resource.key.cmp(&plan.graph[*b].resource.key);
    uses.sort_by(by_key);
    used_by.sort_by(by_key);
    let (place, verdict) = match &n.disposition {
        Disposition::Delete => {
            let before = deleted_before(plan, node);
            let direct: Vec<String> = used_by
                .iter()
                .filter(|&&u| plan.graph[u].disposition.is_actionable())
                .map(|&u| named(plan, &plan.graph[u].resource.key))
                .collect();
            let sentence = if direct.is_empty() {
                "would be deleted: nothing has to go before it".to_string()
            } else {
                format!("would be deleted after {}", and_list(&direct))
            };
            let sentence = match (mode, &n.verdict) {
                (Mode::ReportOnly, _) => {
                    format!("{sentence}, but the janitor runs report-only: nothing is deleted")
                }
                (Mode::Delete, Some(Verdict::Expired { tag })) => {
                    format!("{sentence} (its expiry tag {tag} has passed)")
                }
                (Mode::Delete, Some(Verdict::Leaked(sign))) => {
                    format!(
                        "{sentence} (a suspected leak, {}, of a kind opted in)",
                        sign.describe()
                    )
                }
                (Mode::Delete, _) => sentence,
            };
            let place = PlanPlace::Delete {
                position: plan.order.iter().position(|&n| n == node).map_or(0, |at| at + 1),
                of: plan.order.len(),
                after: before
                    .iter()
                    .map(|&b| named(plan, &plan.graph[b].resource.key))
                    .collect(),
            };
            (place, sentence)
        }
        Disposition::AwaitRemoval { owner } => (
            PlanPlace::AwaitRemoval {
                owner: owner.to_string(),
            },
            format!(
                "not deleted by the janitor: its owner {} removes it, and is to be deleted; the janitor \
                 waits for it to disappear",
                named(plan, owner)
            ),
        ),
        Disposition::Held { reason } => {
            let sentence = match reason {
                LeftReason::InUse { by } => format!(
                    "held: in use by {}, {}",
                    named(plan, by),
                    why_user_stays(plan, by)
                ),
                other => format!("held: {}", other.sentence(|key| named(plan, key))),
            };
            (
                PlanPlace::Held {
                    reason: reason.sentence(|key| named(plan, key)),
                },
                sentence,
            )
        }
        Disposition::Keep => (PlanPlace::Keep, kept_sentence(n.verdict.as_ref(), kind)),
    };
    Explanation {
        cloud: resource.key.cloud.clone(),
        kind,
        id: resource.key.id.clone(),
        name: resource.name.clone(),
        status: resource.status.clone(),
        project: resource.project.clone(),
        tags: resource.tags.clone(),
        created: resource.created,
        verdict,
        selection: n
            .verdict
            .as_ref()
            .map_or_else(|| "not listed".to_string(), Verdict::describe),
        rules: selector.checks(resource, history, now),
        uses: uses.into_iter().map(|u| neighbour(plan, u)).collect(),
        used_by: used_by.into_iter().map(|u| neighbour(plan, u)).collect(),
        plan: place,
        history: record,
    }
}

fn neighbours(out: &mut String, title: &str, list: &[Neighbour]) {
    let _ = writeln!(out, "\n{title}");
    if list.is_empty() {
        let _ = writeln!(out, "  nothing");
    }
    for n in list {
        let line = format!(
            "  {:<16} {:<38} {:<24} {}, {}",
            n.kind,
            n.id,
            n.name,
            action_words(n.action),
            n.selection
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

fn action_words(action: &str) -> &'static str {
    match action {
        "delete" => "to be deleted",
        "await_removal" => "removed with its owner",
        "held" => "held",
        _ => "kept",
    }
}

impl Explanation {
    /// The explanation for people.
    pub fn render_text(&self, now: DateTime<Utc>) -> String {
        let mut out = String::new();
        let name = if self.name.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.name)
        };
        let _ = writeln!(out, "{} {}{name} in cloud {}", self.kind, self.id, self.cloud);
        let created = match self.created {
            Some(created) => format!(
                "created {} ({} ago)",
                time(created),
                human((now - created).to_std().unwrap_or_default())
            ),
            None => "no creation time".to_string(),
        };
        let tags = if self.tags.is_empty() {
            "no tags".to_string()
        } else {
            format!("tags {}", self.tags.join(", "))
        };
        let status = if self.status.is_empty() {
            "no status".to_string()
        } else {
            format!("status {}", self.status)
        };
        let project = self
            .project
            .as_deref()
            .map_or_else(String::new, |p| format!(", project {p}"));
        let _ = writeln!(out, "  {status}{project}, {created}, {tags}");
        let _ = writeln!(out, "\nVerdict: {}", self.verdict);
        let _ = writeln!(out, "\nSelection rules ({}):", self.selection);
        let _ = writeln!(out, "  {:<24} {:<7} {:<30} SEEN", "RULE", "RESULT", "SETTING");
        for rule in &self.rules {
            let _ = writeln!(
                out,
                "  {:<24} {:<7} {:<30} {}",
                rule.rule,
                rule.result.as_str(),
                rule.setting,
                rule.seen
            );
        }
        neighbours(&mut out, "Uses (deleted after it, if selected):", &self.uses);
        neighbours(&mut out, "Used by (gone before it is deleted):", &self.used_by);
        let plan = match &self.plan {
            PlanPlace::Delete { position, of, after } if after.is_empty() => {
                format!("delete, step {position} of {of}, nothing before it")
            }
            PlanPlace::Delete { position, of, after } => {
                format!("delete, step {position} of {of}, after: {}", after.join(", "))
            }
            PlanPlace::AwaitRemoval { owner } => format!("wait for its owner {owner} to remove it"),
            PlanPlace::Keep => "keep (never touched)".to_string(),
            PlanPlace::Held { reason } => format!("held back: {reason}"),
        };
        let _ = writeln!(out, "\nPlan: {plan}");
        let history = match &self.history {
            None => "none: no pass has seen it (or history_file is not set)".to_string(),
            Some(r) => {
                let mut parts = vec![
                    format!("first seen {}", time(r.first_seen)),
                    format!("last seen {}", time(r.last_seen)),
                    format!("seen by {} in a row so far", passes(r.sightings)),
                ];
                if r.leak_sightings > 0 {
                    parts.push(format!("looked leaked in {} in a row", passes(r.leak_sightings)));
                }
                parts.push(match r.attempts {
                    1 => "1 delete attempt".to_string(),
                    n => format!("{n} delete attempts"),
                });
                if let Some(outcome) = &r.last_outcome {
                    parts.push(format!("last outcome {outcome}"));
                }
                if let Some(error) = &r.last_error {
                    parts.push(format!("last error: {error}"));
                }
                if r.left_streak > 0 {
                    parts.push(format!("left in {} in a row", passes(r.left_streak)));
                }
                parts.join("; ")
            }
        };
        let _ = writeln!(out, "History: {history}");
        out
    }
}

/// The resources `wanted` names, by id or name, in `cloud` when given; stand-ins of unlisted users
/// are not resources the janitor listed, so they are left out.
pub fn find(plan: &Plan, cloud: Option<&str>, wanted: &str) -> Vec<NodeIndex> {
    let mut found: Vec<NodeIndex> = plan
        .graph
        .node_indices()
        .filter(|&n| {
            let node = &plan.graph[n];
            node.verdict.is_some()
                && cloud.is_none_or(|c| node.resource.key.cloud == c)
                && (node.resource.key.id == wanted || node.resource.name == wanted)
        })
        .collect();
    found.sort_by(|a, b| plan.graph[*a].resource.key.cmp(&plan.graph[*b].resource.key));
    found
}

/// A resource close to what was asked for, when nothing matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Closest {
    pub cloud: String,
    pub kind: &'static str,
    pub id: String,
    pub name: String,
}

/// Edit distance (insertions, deletions, substitutions) between two strings, by characters.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// Up to `n` listed resources whose id or name is closest to `wanted`.
pub fn closest(plan: &Plan, cloud: Option<&str>, wanted: &str, n: usize) -> Vec<Closest> {
    let wanted_lower = wanted.to_lowercase();
    let mut scored: Vec<(usize, &ResourceKey, &str)> = plan
        .nodes()
        .filter(|node| node.verdict.is_some() && cloud.is_none_or(|c| node.resource.key.cloud == c))
        .map(|node| {
            let key = &node.resource.key;
            let name = node.resource.name.as_str();
            let score = [key.id.as_str(), name]
                .iter()
                .filter(|text| !text.is_empty())
                .map(|text| distance(&wanted_lower, &text.to_lowercase()))
                .min()
                .unwrap_or(usize::MAX);
            (score, key, name)
        })
        .collect();
    scored.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(b.1)));
    scored
        .into_iter()
        .take(n)
        .map(|(_, key, name)| Closest {
            cloud: key.cloud.clone(),
            kind: key.kind.as_str(),
            id: key.id.clone(),
            name: name.to_string(),
        })
        .collect()
}

/// What `explain` prints when nothing has that id or name.
pub fn render_not_found(wanted: &str, clouds: &[&str], closest: &[Closest]) -> String {
    let mut out = format!(
        "no resource with id or name `{wanted}` in cloud {}\n",
        clouds.join(", ")
    );
    if closest.is_empty() {
        out.push_str("(nothing was listed)\n");
        return out;
    }
    out.push_str("The closest:\n");
    for c in closest {
        let line = format!("  {:<14} {:<16} {:<38} {}", c.cloud, c.kind, c.id, c.name);
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests;
