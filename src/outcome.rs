//! The one vocabulary of what became of a resource in a pass: [`Outcome`] and, for what stayed,
//! [`LeftReason`], each with its bounded metric label and its human sentence. The planner, the
//! executor, the report, the metrics, the history and the exit code all speak it.

use std::fmt;

use serde::Serialize;

use crate::model::ResourceKey;
use crate::selection::Verdict;

/// Why a selected resource is still there after the pass (or, in a plan, will be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum LeftReason {
    /// A resource the janitor does not delete still uses it (the planner's verdict, or an owned
    /// resource its owner released instead of removing).
    InUse { by: ResourceKey },
    /// Something that uses it stayed this pass (failed, timed out), so it was not attempted.
    Blocked { by: ResourceKey },
    /// Part of a reference cycle; only the members are held back.
    Cycle { members: Vec<ResourceKey> },
    /// Conflicts until the attempt budget ran out.
    Conflict { message: String },
    /// A failure retrying cannot fix (403, a failed task, `error_deleting`).
    PermanentError { message: String },
    /// Transient failures until the attempt budget ran out.
    RetriesExhausted { message: String },
    /// In a transitional state (locked, deleting, pending) for longer than `busy_timeout`.
    Busy { state: String },
    /// Not attempted: the pass reached `max_deletes_per_pass`.
    DeleteCap,
    /// Not attempted: the pass deadline passed.
    PassDeadline,
    /// Not attempted: the daemon is shutting down.
    Shutdown,
}

impl LeftReason {
    /// The bounded label for `cloud_janitor_leftover_resources{reason}` and the history.
    pub fn label(&self) -> &'static str {
        match self {
            LeftReason::InUse { .. } => "in_use",
            LeftReason::Blocked { .. } => "blocked",
            LeftReason::Cycle { .. } => "cycle",
            LeftReason::Conflict { .. } => "conflict",
            LeftReason::PermanentError { .. } => "permanent_error",
            LeftReason::RetriesExhausted { .. } => "retries_exhausted",
            LeftReason::Busy { .. } => "busy",
            LeftReason::DeleteCap => "delete_cap",
            LeftReason::PassDeadline => "pass_deadline",
            LeftReason::Shutdown => "shutdown",
        }
    }

    /// True when an attempt at the resource itself failed (as opposed to it never being attempted,
    /// or being held by something else): `cloud_janitor_deletes_total{outcome="failed"}`.
    pub fn is_failed_attempt(&self) -> bool {
        matches!(
            self,
            LeftReason::Conflict { .. }
                | LeftReason::PermanentError { .. }
                | LeftReason::RetriesExhausted { .. }
                | LeftReason::Busy { .. }
        )
    }

    /// The sentence for people, with `name` deciding how another resource is shown (a plain key, or
    /// a key with its name: "in use by port 4f2a (keep-port)").
    pub fn sentence(&self, name: impl Fn(&ResourceKey) -> String) -> String {
        match self {
            LeftReason::InUse { by } => format!("in use by {}", name(by)),
            LeftReason::Blocked { by } => format!("blocked: {} stayed", name(by)),
            LeftReason::Cycle { members } => {
                let names: Vec<String> = members.iter().map(&name).collect();
                format!("reference cycle: {}", names.join(" -> "))
            }
            LeftReason::Conflict { message } => format!("conflict: {message}"),
            LeftReason::PermanentError { message } => format!("error: {message}"),
            LeftReason::RetriesExhausted { message } => format!("gave up after retries: {message}"),
            LeftReason::Busy { state } => format!("busy: {state}"),
            LeftReason::DeleteCap => "max_deletes_per_pass reached".to_string(),
            LeftReason::PassDeadline => "pass deadline reached".to_string(),
            LeftReason::Shutdown => "shutting down".to_string(),
        }
    }
}

impl fmt::Display for LeftReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sentence(ToString::to_string))
    }
}

/// What became of one discovered resource in a pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "status", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// Deleted by this pass.
    Deleted,
    /// Gone before the janitor's delete (404 at the status read or on delete).
    AlreadyGone,
    /// Not selected itself; went away with its selected owner, as expected.
    RemovedWithOwner,
    /// Selected, still there.
    Left(LeftReason),
    /// Selected and free to go, but the janitor runs report-only: nothing was attempted.
    WouldDelete,
    /// Not selected: never touched. The verdict says why.
    Skipped(Verdict),
}

impl Outcome {
    /// The bounded label for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Deleted => "deleted",
            Outcome::AlreadyGone => "already_gone",
            Outcome::RemovedWithOwner => "removed_with_owner",
            Outcome::Left(_) => "left",
            Outcome::WouldDelete => "would_delete",
            Outcome::Skipped(_) => "skipped",
        }
    }

    /// Why it stayed, for a selected resource that stayed.
    pub fn left_reason(&self) -> Option<&LeftReason> {
        match self {
            Outcome::Left(reason) => Some(reason),
            _ => None,
        }
    }

    /// True when the resource is no longer there.
    pub fn is_gone(&self) -> bool {
        matches!(
            self,
            Outcome::Deleted | Outcome::AlreadyGone | Outcome::RemovedWithOwner
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Deleted => f.write_str("deleted"),
            Outcome::AlreadyGone => f.write_str("already gone"),
            Outcome::RemovedWithOwner => f.write_str("went with its owner"),
            Outcome::Left(reason) => write!(f, "left: {reason}"),
            Outcome::WouldDelete => f.write_str("would be deleted (report-only)"),
            Outcome::Skipped(verdict) => write!(f, "not selected: {}", verdict.describe()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;

    #[test]
    fn every_left_reason_has_a_distinct_label_and_names_what_holds_it() {
        let port = ResourceKey::new("c", Kind::Port, "p1");
        let reasons = [
            LeftReason::InUse { by: port.clone() },
            LeftReason::Blocked { by: port.clone() },
            LeftReason::Cycle {
                members: vec![port.clone()],
            },
            LeftReason::Conflict {
                message: "409".into(),
            },
            LeftReason::PermanentError {
                message: "403".into(),
            },
            LeftReason::RetriesExhausted {
                message: "503".into(),
            },
            LeftReason::Busy {
                state: "locked".into(),
            },
            LeftReason::DeleteCap,
            LeftReason::PassDeadline,
            LeftReason::Shutdown,
        ];
        let labels: std::collections::BTreeSet<_> = reasons.iter().map(LeftReason::label).collect();
        assert_eq!(labels.len(), reasons.len());
        let named = |key: &ResourceKey| format!("{key} (keep-port)");
        assert_eq!(reasons[0].sentence(named), "in use by port p1 (keep-port)");
        assert_eq!(reasons[1].to_string(), "blocked: port p1 stayed");
        let failed: Vec<_> = reasons
            .iter()
            .filter(|r| r.is_failed_attempt())
            .map(LeftReason::label)
            .collect();
        assert_eq!(
            failed,
            ["conflict", "permanent_error", "retries_exhausted", "busy"]
        );
    }

    #[test]
    fn outcomes_serialize_as_the_report_json_has_always_shown_them() {
        let left = Outcome::Left(LeftReason::Busy {
            state: "locked".into(),
        });
        assert_eq!(
            serde_json::to_value(&left).unwrap(),
            serde_json::json!({"status": "left", "detail": {"reason": "busy", "state": "locked"}})
        );
        assert_eq!(
            serde_json::to_value(Outcome::Skipped(Verdict::NotMatched("tags_all"))).unwrap(),
            serde_json::json!({"status": "skipped", "detail": "not matched: tags_all"})
        );
        assert_eq!(
            serde_json::to_value(Outcome::Deleted).unwrap(),
            serde_json::json!({"status": "deleted"})
        );
    }
}
