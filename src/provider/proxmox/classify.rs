//! The one place where Proxmox VE's answers are turned into decisions. Proxmox has no 409: a lock
//! held by another task is a 500 "got timeout" or a failed task "VM is locked (...)"; a missing guest
//! is a 500 "... does not exist"; an unreachable node is a 595-599 from the proxy.

use crate::provider::ErrorClass;

/// Where a text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// An HTTP answer with this status.
    Http(u16),
    /// A finished task's exit status.
    Task,
}

/// What the provider does about an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The guest, volume or config does not exist: done.
    NotFound,
    /// A lock is held (backup, migration, another task): requeue.
    Conflict,
    /// The guest is still running: stop it again, then retry.
    StillRunning,
    /// The guest is not running (a stop of a stopped container): nothing to do.
    NotRunning,
    /// The task is not known yet (400 "no such task"): poll again.
    TaskNotYetKnown,
    /// The credentials were refused: re-authenticate once (tickets), then give up.
    Unauthorized,
    /// 429 or 503.
    RateLimited,
    /// A node is unreachable (595-599) or another server error: try again.
    Transient,
    /// Anything else: retrying will not help.
    Permanent,
}

impl Verdict {
    /// The class the executor sees when this verdict leaves the provider as an error.
    pub fn error_class(self) -> ErrorClass {
        match self {
            Verdict::NotFound => ErrorClass::NotFound,
            Verdict::Conflict | Verdict::StillRunning => ErrorClass::Conflict,
            Verdict::RateLimited => ErrorClass::RateLimited { retry_after: None },
            Verdict::Transient | Verdict::TaskNotYetKnown => ErrorClass::Transient,
            Verdict::NotRunning | Verdict::Unauthorized | Verdict::Permanent => ErrorClass::Permanent,
        }
    }
}

/// Classifies an error answer or a failed task's text.
pub fn classify(source: Source, text: &str) -> Verdict {
    let text = text.trim();
    if let Source::Http(status) = source {
        if status == 401 {
            return Verdict::Unauthorized;
        }
        if (595..=599).contains(&status) {
            return Verdict::Transient;
        }
        if status == 404 {
            return Verdict::NotFound;
        }
        if status == 400 && text.contains("no such task") {
            return Verdict::TaskNotYetKnown;
        }
    }
    // A missing storage is a configuration problem, not a deleted resource.
    if text.contains("does not exist") && !text.starts_with("storage '") {
        return Verdict::NotFound;
    }
    if text.contains("got timeout") || text.contains("is locked") {
        return Verdict::Conflict;
    }
    if text.contains("not running") {
        return Verdict::NotRunning;
    }
    if text.contains("is running") {
        return Verdict::StillRunning;
    }
    match source {
        Source::Task => Verdict::Permanent,
        Source::Http(429 | 503) => Verdict::RateLimited,
        Source::Http(500)
            if text.contains("protection mode enabled") || text.contains("Permission check failed") =>
        {
            Verdict::Permanent
        }
        Source::Http(status) if status >= 500 => Verdict::Transient,
        Source::Http(_) => Verdict::Permanent,
    }
}

/// True for a finished task's exit status that means success (`OK`, `WARNINGS: n`).
pub fn exit_status_ok(exitstatus: &str) -> bool {
    exitstatus == "OK"
        || exitstatus
            .strip_prefix("WARNINGS: ")
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_contention_is_a_conflict() {
        let http = Source::Http(500);
        assert_eq!(
            classify(
                http,
                "can't lock file '/var/lock/qemu-server/lock-104.conf' - got timeout"
            ),
            Verdict::Conflict
        );
        assert_eq!(classify(Source::Task, "VM is locked (backup)"), Verdict::Conflict);
        assert_eq!(classify(http, "CT is locked (backup)\n"), Verdict::Conflict);
        assert_eq!(
            classify(Source::Task, "VM quit/powerdown failed - got timeout"),
            Verdict::Conflict
        );
    }

    #[test]
    fn missing_things_are_not_found_except_storages() {
        let http = Source::Http(500);
        assert_eq!(
            classify(
                http,
                "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
            ),
            Verdict::NotFound
        );
        assert_eq!(
            classify(http, "volume 'local-lvm:vm-999-disk-0' does not exist"),
            Verdict::NotFound
        );
        assert_eq!(classify(Source::Http(404), ""), Verdict::NotFound);
        assert_eq!(classify(http, "storage 'nfs' does not exist"), Verdict::Transient);
    }

    #[test]
    fn running_and_not_running_guests() {
        assert_eq!(
            classify(Source::Http(500), "VM 101 is running - destroy failed"),
            Verdict::StillRunning
        );
        assert_eq!(
            classify(
                Source::Http(500),
                "unable to destroy CT 201 - container is running"
            ),
            Verdict::StillRunning
        );
        assert_eq!(
            classify(Source::Http(500), "CT 201 not running"),
            Verdict::NotRunning
        );
        assert_eq!(Verdict::StillRunning.error_class(), ErrorClass::Conflict);
    }

    #[test]
    fn proxy_errors_unknown_tasks_and_auth() {
        assert_eq!(
            classify(Source::Http(595), "No route to host"),
            Verdict::Transient
        );
        assert_eq!(classify(Source::Http(599), ""), Verdict::Transient);
        assert_eq!(
            classify(Source::Http(400), "no such task"),
            Verdict::TaskNotYetKnown
        );
        assert_eq!(
            classify(Source::Http(401), "invalid ticket"),
            Verdict::Unauthorized
        );
        assert_eq!(Verdict::Unauthorized.error_class(), ErrorClass::Permanent);
        assert_eq!(classify(Source::Http(503), "busy"), Verdict::RateLimited);
    }

    #[test]
    fn other_failures_are_permanent() {
        assert_eq!(
            classify(Source::Http(400), "Parameter verification failed."),
            Verdict::Permanent
        );
        assert_eq!(
            classify(Source::Http(403), "Permission check failed"),
            Verdict::Permanent
        );
        assert_eq!(
            classify(Source::Http(500), "can't remove VM 105 - protection mode enabled"),
            Verdict::Permanent
        );
        assert_eq!(
            classify(Source::Task, "storage 'ceph' is not online"),
            Verdict::Permanent
        );
        assert_eq!(
            classify(Source::Http(500), "unexpected server error"),
            Verdict::Transient
        );
    }

    #[test]
    fn exit_statuses() {
        assert!(exit_status_ok("OK"));
        assert!(exit_status_ok("WARNINGS: 2"));
        assert!(!exit_status_ok("WARNINGS: "));
        assert!(!exit_status_ok("VM is locked (backup)"));
        assert!(!exit_status_ok(""));
        assert!(!exit_status_ok("unexpected status"));
    }
}
