//! Waiting, in tests, for what genuinely happens in real time (a process starting, a listener
//! closing, a daemon's first pass): one helper with a deadline far from the expected time, for the
//! simulator's tests and the janitor's alike. What the simulators time themselves is moved on with
//! their clock instead (`advance_clock`).

use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Polls `condition` until it holds; panics naming `what` once `deadline` has passed first.
#[allow(clippy::panic)] // A helper for tests: the panic is the failed test.
pub async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    while !condition().await {
        if tokio::time::Instant::now() >= give_up {
            panic!("{what}: still not the case after {deadline:?}");
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
