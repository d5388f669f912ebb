//! Test support shared by the simulator's test binaries: waiting for a listener to close (with the
//! crate's one `wait_for`). Everything timed inside the simulators is moved on with `advance_clock`.

use std::time::Duration;

use cloud_janitor_sim::wait::wait_for;

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
