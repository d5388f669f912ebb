//! Proxmox worker tasks: UPIDs, and waiting for a task to end. A task is polled on the node its UPID
//! names until it reports `stopped` with an `exitstatus`; a status without one, a task not known yet
//! (400 "no such task") and proxy errors (595-599) mean "poll again", all bounded by a deadline.

use std::time::Duration;

use super::classify::{classify, exit_status_ok, Source, Verdict};
use super::client::{verdict_of, PveClient};
use super::wire::TaskStatus;
use crate::poll::{poll_until, Poll, PollPolicy};
use crate::provider::http::ApiPath;
use crate::provider::ProviderError;

/// The parts of a UPID (`UPID:node:pid:pstart:starttime:type:id:user:`) the janitor needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upid {
    pub node: String,
    pub task_type: String,
    pub id: String,
}

/// Parses a UPID; `None` when it is not one.
pub fn parse_upid(upid: &str) -> Option<Upid> {
    let parts: Vec<&str> = upid.split(':').collect();
    if parts.len() < 9 || parts[0] != "UPID" || parts[1].is_empty() {
        return None;
    }
    Some(Upid {
        node: parts[1].to_string(),
        task_type: parts[5].to_string(),
        id: parts[6].to_string(),
    })
}

/// What one status read says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaskState {
    Running,
    /// `stopped` but no `exitstatus` yet: not finished as far as the janitor is concerned.
    StoppedWithoutExitStatus,
    Finished(String),
}

/// Reads `GET /nodes/{node}/tasks/{upid}/status` data.
pub fn task_state(data: TaskStatus) -> TaskState {
    match data.status.as_deref() {
        Some("stopped") => match data.exitstatus {
            Some(exitstatus) => TaskState::Finished(exitstatus),
            None => TaskState::StoppedWithoutExitStatus,
        },
        _ => TaskState::Running,
    }
}

/// Waits for the task `upid` started by `operation` ("stop VM 101") to end. `Ok(())` for `OK` and
/// `WARNINGS: n`; [`ProviderError::OperationFailed`] with the task's text otherwise;
/// [`ProviderError::Deadline`] when it is not over after `timeout`.
pub async fn wait_for_task(
    client: &PveClient,
    upid: &str,
    operation: &str,
    interval: Duration,
    timeout: Duration,
) -> Result<(), ProviderError> {
    let parsed = parse_upid(upid).ok_or_else(|| ProviderError::Decode {
        url: operation.to_string(),
        message: format!("`{upid}` is not a task id"),
    })?;
    let path = ApiPath::new(["nodes", parsed.node.as_str(), "tasks", upid, "status"]);
    // A task just started is not finished: the first look waits an interval.
    let policy = PollPolicy::new(interval, timeout).first_look_after(interval);
    // The poll is this read's retry: a failure that passes is "not yet", looked at again at the
    // poll's cadence until the task's deadline.
    let outcome = poll_until(policy, || async {
        match client.get_once(&path, "task status").await {
            Ok(data) => Ok(match task_state(data) {
                TaskState::Finished(exitstatus) => Poll::Done(exitstatus),
                TaskState::StoppedWithoutExitStatus => {
                    Poll::Pending("stopped without exit status".to_string())
                }
                TaskState::Running => Poll::Pending("running".to_string()),
            }),
            Err(error) => match verdict_of(&error) {
                Some(Verdict::TaskNotYetKnown | Verdict::Transient | Verdict::RateLimited) => {
                    Ok(Poll::Pending(error.to_string()))
                }
                _ if matches!(error, ProviderError::Network { .. }) => Ok(Poll::Pending(error.to_string())),
                _ => Err(error),
            },
        }
    })
    .await?;
    match outcome {
        Ok(exitstatus) if exit_status_ok(&exitstatus) => Ok(()),
        Ok(exitstatus) => Err(ProviderError::OperationFailed {
            class: classify(Source::Task, &exitstatus).error_class(),
            operation: format!("{operation} (task {upid})"),
            message: exitstatus,
        }),
        Err(timeout) => Err(ProviderError::Deadline {
            operation: format!("{operation} (task {upid})"),
            waited: timeout.waited,
            last_state: timeout.last_state,
        }),
    }
}

/// The UPID a task-starting call returned as its `data`.
pub fn upid_of(data: Option<String>, operation: &str) -> Result<String, ProviderError> {
    match data {
        Some(upid) if parse_upid(&upid).is_some() => Ok(upid),
        other => Err(ProviderError::Decode {
            url: operation.to_string(),
            message: match other {
                Some(text) => format!("proxmox: task id: expected a task id, got `{text}`"),
                None => "proxmox: task id: expected a task id, got null".to_string(),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(value: serde_json::Value) -> TaskStatus {
        serde_json::from_value(value).expect("a task status")
    }

    #[test]
    fn upids_name_their_node() {
        let upid = "UPID:pve2:00001234:0000ABCD:66A0B0C0:qmdestroy:101:root@pam!janitor:";
        let parsed = parse_upid(upid).unwrap();
        assert_eq!(parsed.node, "pve2");
        assert_eq!(parsed.task_type, "qmdestroy");
        assert_eq!(parsed.id, "101");
        assert_eq!(parse_upid("not-a-upid"), None);
        assert_eq!(parse_upid("UPID::1:2:3:t:i:u:"), None);
    }

    #[test]
    fn a_stopped_task_without_exit_status_is_not_finished() {
        assert_eq!(
            task_state(status(json!({"status": "running"}))),
            TaskState::Running
        );
        assert_eq!(
            task_state(status(json!({"status": "stopped"}))),
            TaskState::StoppedWithoutExitStatus
        );
        assert_eq!(
            task_state(status(json!({"status": "stopped", "exitstatus": "OK"}))),
            TaskState::Finished("OK".into())
        );
        assert_eq!(task_state(status(json!({}))), TaskState::Running);
    }
}
