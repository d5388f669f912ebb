//! The clock both simulators read for every timed behaviour (asynchronous deletes, token and ticket
//! expiry, task durations, lock waits): tokio's `Instant::now()` plus an offset that tests move
//! forward with [`SimClock::advance`] instead of sleeping.
//!
//! Why an offset rather than tokio's paused time: a paused runtime auto-advances whenever it would
//! park, so with real loopback HTTP in the same runtime a client's 30 s timeout can fire at once. An
//! offset moves only the simulator's idea of "now", and only when a test says so.
//!
//! Only the monotonic clock moves: the wall-clock timestamps the simulators report (`created_at`,
//! `expires_at`, UPID start times) stay real.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

/// A cheap, cloneable handle to one simulator's clock; clones share the offset.
#[derive(Debug, Clone, Default)]
pub struct SimClock {
    /// Nanoseconds added to tokio's clock (584 years fit in a `u64`).
    offset_nanos: Arc<AtomicU64>,
}

impl SimClock {
    /// A clock that reads the same as tokio's until it is advanced.
    pub fn new() -> Self {
        SimClock::default()
    }

    /// Now, as the simulator sees it.
    pub fn now(&self) -> Instant {
        Instant::now() + self.offset()
    }

    /// How far the clock has been advanced in all.
    pub fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_nanos.load(Ordering::SeqCst))
    }

    /// Moves the clock forward by `by`: whatever falls due in that time is due at the next look at
    /// the simulator's state.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // `fetch_update` with a closure that always returns `Some` cannot fail.
        let _ = self
            .offset_nanos
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |current| {
                Some(current.saturating_add(nanos))
            });
    }

    /// How long ago `then` was, on this clock (zero for a time in the future).
    pub fn since(&self, then: Instant) -> Duration {
        self.now().saturating_duration_since(then)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advancing_moves_every_clone() {
        let clock = SimClock::new();
        let start = clock.now();
        let other = clock.clone();
        other.advance(Duration::from_secs(3600));
        assert!(clock.since(start) >= Duration::from_secs(3600));
        assert_eq!(clock.offset(), Duration::from_secs(3600));
        assert_eq!(clock.since(clock.now() + Duration::from_secs(5)), Duration::ZERO);
    }
}
