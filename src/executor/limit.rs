//! One cloud's concurrency limit: fixed, or adaptive by additive increase and multiplicative
//! decrease (AIMD). Adaptive, it grows by one after a window of healthy calls as large as the limit
//! itself, and halves when a call meets a 429, a 503 or no answer; between configured bounds, and
//! at most once per window (calls started before a decrease do not decrease it again).

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How a cloud's limit may move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitPolicy {
    /// Always this many calls in flight.
    Fixed(usize),
    /// Start at `initial`, stay within `min..=max`.
    Adaptive { initial: usize, min: usize, max: usize },
}

#[derive(Debug)]
struct State {
    limit: usize,
    /// Permits still to be withdrawn as calls return them, after a decrease.
    debt: usize,
    /// Healthy calls since the limit last changed.
    healthy: usize,
    /// Counts decreases; a call remembers the epoch it started in.
    epoch: u64,
}

/// A cloud's limit: a semaphore whose size follows [`LimitPolicy`].
#[derive(Debug)]
pub struct ConcurrencyLimit {
    policy: LimitPolicy,
    semaphore: Arc<Semaphore>,
    state: Mutex<State>,
}

/// One call's place under the limit; returned (or withdrawn, after a decrease) when dropped.
pub struct Slot<'a> {
    limit: &'a ConcurrencyLimit,
    permit: Option<OwnedSemaphorePermit>,
    epoch: u64,
}

/// What a finished call tells the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// 429, 503, a timeout or no answer: the API wants fewer calls.
    Congested,
    /// Any other failure: says nothing about load.
    Neutral,
}

impl ConcurrencyLimit {
    pub fn new(policy: LimitPolicy) -> Self {
        let limit = match policy {
            LimitPolicy::Fixed(limit) => limit.max(1),
            LimitPolicy::Adaptive { initial, min, max } => initial.clamp(min.max(1), max.max(1)),
        };
        ConcurrencyLimit {
            policy,
            semaphore: Arc::new(Semaphore::new(limit)),
            state: Mutex::new(State {
                limit,
                debt: 0,
                healthy: 0,
                epoch: 0,
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current limit.
    pub fn current(&self) -> usize {
        self.state().limit
    }

    /// Waits for a place under the limit.
    pub async fn acquire(&self) -> Slot<'_> {
        let epoch = self.state().epoch;
        // The semaphore is never closed, so acquiring cannot fail; if it somehow did, running the
        // call unbounded is safer than dropping it.
        let permit = self.semaphore.clone().acquire_owned().await.ok();
        Slot {
            limit: self,
            permit,
            epoch,
        }
    }

    /// Records how a call that held `slot` went; returns the new limit when it changed.
    pub fn record(&self, slot: &Slot<'_>, health: Health) -> Option<usize> {
        let LimitPolicy::Adaptive { min, max, .. } = self.policy else {
            return None;
        };
        let mut state = self.state();
        match health {
            Health::Neutral => None,
            Health::Healthy => {
                state.healthy += 1;
                if state.healthy < state.limit || state.limit >= max {
                    return None;
                }
                state.healthy = 0;
                state.limit += 1;
                if state.debt > 0 {
                    state.debt -= 1;
                } else {
                    self.semaphore.add_permits(1);
                }
                Some(state.limit)
            }
            Health::Congested if slot.epoch < state.epoch => None,
            Health::Congested => {
                let lower = (state.limit / 2).max(min.max(1));
                if lower >= state.limit {
                    return None;
                }
                let mut withdraw = state.limit - lower;
                state.limit = lower;
                state.healthy = 0;
                state.epoch += 1;
                // Withdraw idle permits now, the rest as calls in flight return theirs.
                while withdraw > 0 {
                    match self.semaphore.try_acquire() {
                        Ok(permit) => {
                            permit.forget();
                            withdraw -= 1;
                        }
                        Err(_) => break,
                    }
                }
                state.debt += withdraw;
                Some(state.limit)
            }
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut state = self.limit.state();
        if state.debt > 0 {
            if let Some(permit) = self.permit.take() {
                permit.forget();
                state.debt -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adaptive(initial: usize, min: usize, max: usize) -> ConcurrencyLimit {
        ConcurrencyLimit::new(LimitPolicy::Adaptive { initial, min, max })
    }

    #[tokio::test]
    async fn healthy_windows_add_one_and_congestion_halves_once_per_window() {
        let limit = adaptive(4, 2, 6);
        for _ in 0..4 {
            let slot = limit.acquire().await;
            limit.record(&slot, Health::Healthy);
        }
        assert_eq!(limit.current(), 5, "one window of 4 healthy calls adds one");
        let (a, b) = (limit.acquire().await, limit.acquire().await);
        assert_eq!(limit.record(&a, Health::Congested), Some(2));
        assert_eq!(
            limit.record(&b, Health::Congested),
            None,
            "b started before the decrease"
        );
        drop((a, b));
        assert_eq!(
            limit.semaphore.available_permits(),
            2,
            "in-flight permits were withdrawn"
        );
        let c = limit.acquire().await;
        assert_eq!(limit.record(&c, Health::Congested), None, "never below min");
        for _ in 0..100 {
            let slot = limit.acquire().await;
            limit.record(&slot, Health::Healthy);
        }
        assert_eq!(limit.current(), 6, "never above max");
    }

    #[tokio::test]
    async fn a_fixed_limit_never_moves() {
        let limit = ConcurrencyLimit::new(LimitPolicy::Fixed(3));
        let slot = limit.acquire().await;
        assert_eq!(limit.record(&slot, Health::Congested), None);
        assert_eq!(limit.current(), 3);
    }
}
