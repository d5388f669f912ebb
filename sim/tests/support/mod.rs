//! Test support shared by the simulator's test binaries: the one helper that waits for something
//! that genuinely happens in real time (a listener closing), with a deadline far from the expected
//! time. Everything timed inside the simulators is moved on with `advance_clock` instead.

use std::future::Future;
use std::time::Duration;

/// How often [`wait_for`] looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Polls `condition` until it holds; panics naming `what` when `deadline` has passed first.
pub async fn wait_for<F, Fut>(deadline: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let give_up = tokio::time::Instant::now() + deadline;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < give_up,
            "{what}: still not the case after {deadline:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Waits until a fresh connection to `url` fails, as it does once a simulator stopped serving.
pub async fn wait_until_refused(url: &str) {
    wait_for(Duration::from_secs(10), "the listener closing", || async {
        let fresh = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        fresh.get(url).send().await.is_err()
    })
    .await;
}
