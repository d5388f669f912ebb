//! Deadline-bounded polling, for every wait on an asynchronous operation: a state that says "not yet"
//! (or says nothing) is polled again until the deadline, never taken for success and never waited on
//! forever.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// What one look at the operation found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll<T> {
    /// Finished, with its result.
    Done(T),
    /// Not finished; the text says what was seen, for the deadline error.
    Pending(String),
}

/// How often and how long to poll.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PollPolicy {
    /// The first interval; it grows by half each round up to `max_interval`.
    pub interval: Duration,
    pub max_interval: Duration,
    pub timeout: Duration,
    /// How long to wait before the first look (zero: look at once).
    pub first_look: Duration,
}

impl PollPolicy {
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        PollPolicy {
            interval,
            max_interval: interval.saturating_mul(8),
            timeout,
            first_look: Duration::ZERO,
        }
    }

    /// The same policy, its first look `delay` after the start (within the timeout): an operation
    /// that takes time is not asked about the moment it began.
    pub fn first_look_after(mut self, delay: Duration) -> Self {
        self.first_look = delay.min(self.timeout);
        self
    }
}

/// The deadline passed; `last_state` is what the last look said.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not finished after {waited:?}: last seen {last_state}")]
pub struct PollTimeout {
    pub waited: Duration,
    pub last_state: String,
}

/// Calls `check` until it returns `Poll::Done` or `Err`, sleeping between calls, at most until
/// `policy.timeout` has passed. Uses tokio's clock, so tests can pause time.
pub async fn poll_until<T, E, F, Fut>(policy: PollPolicy, mut check: F) -> Result<Result<T, PollTimeout>, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Poll<T>, E>>,
{
    let started = Instant::now();
    let deadline = started + policy.timeout;
    let mut interval = policy.interval;
    if !policy.first_look.is_zero() {
        tokio::time::sleep(policy.first_look).await;
    }
    loop {
        let last_state = match check().await? {
            Poll::Done(value) => return Ok(Ok(value)),
            Poll::Pending(state) => state,
        };
        let now = Instant::now();
        if now >= deadline {
            return Ok(Err(PollTimeout {
                waited: now - started,
                last_state,
            }));
        }
        tokio::time::sleep(interval.min(deadline - now)).await;
        interval = (interval + interval / 2).min(policy.max_interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn pending_states_are_polled_until_done() {
        let mut seen = vec![
            Poll::Pending(String::new()),
            Poll::Pending("deleting".into()),
            Poll::Done(7),
        ];
        seen.reverse();
        let policy = PollPolicy::new(Duration::from_secs(1), Duration::from_secs(60));
        let result: Result<_, ()> = poll_until(policy, || {
            let next = seen.pop().unwrap_or(Poll::Pending("exhausted".into()));
            async move { Ok(next) }
        })
        .await;
        assert_eq!(result, Ok(Ok(7)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_state_forever_ends_at_the_deadline_not_in_success() {
        let policy = PollPolicy::new(Duration::from_secs(1), Duration::from_secs(30));
        let started = Instant::now();
        let result: Result<Result<(), _>, ()> =
            poll_until(policy, || async { Ok(Poll::Pending(String::new())) }).await;
        let timeout = result.expect("no error").expect_err("must time out");
        assert!(started.elapsed() >= Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(40));
        assert_eq!(timeout.last_state, "");
    }
}
