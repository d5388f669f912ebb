//! The pure decision of what to do after a failed call: `decide(class, attempt, policy, jitter)`.
//! The executor does; this decides, so every case is tested exhaustively without a cloud.

use std::time::Duration;

use serde::Deserialize;

use crate::provider::ErrorClass;

/// The `[retry]` table: how hard the janitor tries before it gives up on a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts at one resource (deletes and status reads that failed) before giving up on it.
    pub max_attempts: u32,
    /// The first backoff; it doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub base_delay: Duration,
    /// The longest backoff.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 8,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// What the executor does next with a resource whose call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The resource is gone: count it as done.
    Done,
    /// A conflict: put it back into the queue behind its blockers, after this delay.
    Requeue(Duration),
    /// A passing failure: try the same call again after this delay.
    Retry(Duration),
    /// Stop trying this pass; what depends on it stays too.
    GiveUp(GiveUpReason),
}

/// Why the executor gave up, as a bounded label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// A 4xx that retrying will not change (403, 400, ...).
    Permanent,
    /// Conflicts, rate limits or transient errors every time, up to `max_attempts`.
    AttemptsExhausted,
}

/// Decides what follows a failure of class `class` on attempt number `attempt` (1 for the first).
/// `jitter` is a sample from [0, 1) that spreads backoffs so requeued deletes do not retry in lockstep;
/// passing it in keeps this function pure.
pub fn decide(class: ErrorClass, attempt: u32, policy: &RetryPolicy, jitter: f64) -> Decision {
    let exhausted = attempt >= policy.max_attempts;
    match class {
        ErrorClass::NotFound => Decision::Done,
        ErrorClass::Permanent => Decision::GiveUp(GiveUpReason::Permanent),
        _ if exhausted => Decision::GiveUp(GiveUpReason::AttemptsExhausted),
        ErrorClass::Conflict => Decision::Requeue(backoff(attempt, policy, jitter)),
        ErrorClass::RateLimited {
            retry_after: Some(after),
        } => Decision::Retry(
            after
                .max(backoff(attempt, policy, jitter))
                .min(policy.max_delay.max(after)),
        ),
        ErrorClass::RateLimited { retry_after: None } | ErrorClass::Transient => {
            Decision::Retry(backoff(attempt, policy, jitter))
        }
    }
}

/// Exponential backoff with "equal jitter": half the step is fixed, half random, so a delay never
/// collapses to zero and never exceeds `max_delay`.
pub fn backoff(attempt: u32, policy: &RetryPolicy, jitter: f64) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let step = policy
        .base_delay
        .saturating_mul(1 << exponent)
        .min(policy.max_delay);
    let jitter = jitter.clamp(0.0, 1.0);
    step / 2 + step.mul_f64(jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 4,
            base_delay: SECOND,
            max_delay: Duration::from_secs(10),
        }
    }

    #[test]
    fn not_found_is_done_and_permanent_gives_up_at_once() {
        for attempt in 1..10 {
            assert_eq!(
                decide(ErrorClass::NotFound, attempt, &policy(), 0.5),
                Decision::Done
            );
            assert_eq!(
                decide(ErrorClass::Permanent, attempt, &policy(), 0.5),
                Decision::GiveUp(GiveUpReason::Permanent)
            );
        }
    }

    #[test]
    fn conflicts_requeue_with_growing_backoff_until_the_budget_is_spent() {
        let delays: Vec<Decision> = (1..=4)
            .map(|a| decide(ErrorClass::Conflict, a, &policy(), 0.0))
            .collect();
        assert_eq!(
            delays,
            [
                Decision::Requeue(SECOND / 2),
                Decision::Requeue(SECOND),
                Decision::Requeue(SECOND * 2),
                Decision::GiveUp(GiveUpReason::AttemptsExhausted)
            ]
        );
    }

    #[test]
    fn transient_and_rate_limited_retry_and_retry_after_is_honoured() {
        assert_eq!(
            decide(ErrorClass::Transient, 1, &policy(), 1.0),
            Decision::Retry(SECOND)
        );
        let limited = ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(7)),
        };
        assert_eq!(
            decide(limited, 1, &policy(), 0.0),
            Decision::Retry(Duration::from_secs(7))
        );
        // A server asking for longer than max_delay is still obeyed.
        let patient = ErrorClass::RateLimited {
            retry_after: Some(Duration::from_secs(60)),
        };
        assert_eq!(
            decide(patient, 2, &policy(), 0.0),
            Decision::Retry(Duration::from_secs(60))
        );
        assert_eq!(
            decide(ErrorClass::RateLimited { retry_after: None }, 4, &policy(), 0.0),
            Decision::GiveUp(GiveUpReason::AttemptsExhausted)
        );
    }

    #[test]
    fn backoff_stays_within_half_and_all_of_the_capped_step() {
        for attempt in 1..40 {
            for jitter in [0.0, 0.3, 0.999] {
                let delay = backoff(attempt, &policy(), jitter);
                let step = (SECOND * 2u32.saturating_pow(attempt - 1).min(10)).min(Duration::from_secs(10));
                assert!(delay >= step / 2 && delay <= step, "attempt {attempt}: {delay:?}");
            }
        }
    }
}
