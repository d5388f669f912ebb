//! The executor: deletes a plan's actionable resources, each only after everything that must go before
//! it is confirmed gone, with bounded concurrency, a status read before every delete, polling of
//! asynchronous deletes, and requeues on conflict decided by [`crate::policy::decide`]. It reports
//! what it does as [`Event`]s and knows nothing of metrics, logs or terminals.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use petgraph::graph::NodeIndex;
use petgraph::visit::EdgeRef;
use petgraph::Direction;
use tokio::sync::{Notify, Semaphore, SemaphorePermit};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::batch::{Admission, Purpose, StatusReads};
pub use self::limit::{ConcurrencyLimit, Health, LimitPolicy};
use crate::events::{Event, EventSink, Task};
use crate::model::{DeleteOutcome, Observed};
use crate::outcome::{LeftReason, Outcome};
use crate::planner::{Disposition, Plan, PlanNode};
use crate::policy::{decide, Decision, GiveUpReason, RetryPolicy};
use crate::poll::{poll_until, Poll, PollPolicy};
use crate::provider::{ErrorClass, Provider, ProviderError};

mod batch;
mod limit;

/// How the executor paces and bounds itself.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub retry: RetryPolicy,
    /// Calls in flight across every cloud.
    pub global_concurrency: usize,
    /// Calls in flight against one cloud: fixed, or adaptive between bounds.
    pub per_cloud: LimitPolicy,
    /// How long a resource may stay in a transitional state (deleting, locked, ...) before it is
    /// left for the next pass.
    pub busy_timeout: Duration,
    /// How long an asynchronous delete may take to reach 404.
    pub delete_timeout: Duration,
    /// The first interval between status reads while waiting; it grows up to eight times that.
    pub poll_interval: Duration,
    /// At most this many delete calls per pass (a runaway stop).
    pub max_deletes: usize,
    /// No new delete starts after this instant.
    pub deadline: Instant,
}

/// Runs plans against providers.
pub struct Executor {
    providers: HashMap<String, Arc<dyn Provider>>,
    settings: ExecutorSettings,
    events: Arc<dyn EventSink>,
    cancel: CancellationToken,
    global: Semaphore,
    per_cloud: HashMap<String, ConcurrencyLimit>,
    /// Per cloud, the nodes between their status read and the end of their delete call: four
    /// times the most calls the cloud may have in flight (rounds of twice that), so batched reads
    /// keep deletes busy while no read waits long for its delete.
    admission: HashMap<String, Admission>,
    /// Rung when an admission place comes free.
    freed: Arc<Notify>,
    deletes_issued: AtomicUsize,
}

/// The permits one call holds: the global one and its cloud's.
struct Permits<'a> {
    _global: Option<SemaphorePermit<'a>>,
    cloud: Option<limit::Slot<'a>>,
}

/// Where one node's work stands while it runs.
struct NodeRun<'a> {
    node: &'a PlanNode,
    task: Task,
    started: Instant,
    attempt: u32,
}

impl Executor {
    pub fn new(
        providers: HashMap<String, Arc<dyn Provider>>,
        settings: ExecutorSettings,
        events: Arc<dyn EventSink>,
        cancel: CancellationToken,
    ) -> Self {
        let most_in_flight = match settings.per_cloud {
            LimitPolicy::Fixed(limit) => limit,
            LimitPolicy::Adaptive { max, .. } => max,
        }
        .max(1);
        let per_cloud = providers
            .keys()
            .map(|cloud| (cloud.clone(), ConcurrencyLimit::new(settings.per_cloud)))
            .collect();
        let freed = Arc::new(Notify::new());
        let admission = providers
            .keys()
            .map(|cloud| {
                let window = Admission::new(most_in_flight * 4, most_in_flight * 2, freed.clone());
                (cloud.clone(), window)
            })
            .collect();
        Executor {
            global: Semaphore::new(settings.global_concurrency.max(1)),
            providers,
            settings,
            events,
            cancel,
            per_cloud,
            admission,
            freed,
            deletes_issued: AtomicUsize::new(0),
        }
    }

    /// The current concurrency limit of each cloud.
    pub fn concurrency_limits(&self) -> HashMap<String, usize> {
        self.per_cloud
            .iter()
            .map(|(cloud, limit)| (cloud.clone(), limit.current()))
            .collect()
    }

    /// Runs every actionable node of the plan. A node starts once all its actionable predecessors are
    /// gone; a node that stays leaves everything it uses in place (reported as blocked). Every
    /// actionable node ends with exactly one [`Event::Finished`].
    pub async fn execute(&self, plan: &Plan) {
        for (cloud, limit) in self.concurrency_limits() {
            self.emit(Event::ConcurrencyChanged { cloud, limit });
        }
        let (reads, queue) = StatusReads::new();
        let nodes = async move {
            self.execute_nodes(plan, &reads).await;
            // Dropping `reads` closes the queue: the rounds end once the last is answered.
            drop(reads);
        };
        futures::join!(nodes, self.run_status_rounds(queue));
    }

    async fn execute_nodes<'p>(&self, plan: &'p Plan, reads: &StatusReads<'p>) {
        let graph = &plan.graph;
        let actionable = |n: NodeIndex| graph[n].disposition.is_actionable();
        let mut outcomes: HashMap<NodeIndex, Outcome> = HashMap::new();
        let mut waiting: HashMap<NodeIndex, usize> = HashMap::new();
        let mut running = FuturesUnordered::new();
        for &node in &plan.order {
            let blockers = graph
                .neighbors_directed(node, Direction::Incoming)
                .filter(|&p| actionable(p))
                .count();
            if blockers == 0 {
                running.push(self.run(node, &graph[node], reads));
            } else {
                waiting.insert(node, blockers);
            }
        }
        while let Some((node, outcome)) = running.next().await {
            let gone = outcome.is_gone();
            outcomes.insert(node, outcome);
            if gone {
                for next in graph.neighbors_directed(node, Direction::Outgoing) {
                    if let Some(count) = waiting.get_mut(&next) {
                        *count -= 1;
                        if *count == 0 {
                            waiting.remove(&next);
                            running.push(self.run(next, &graph[next], reads));
                        }
                    }
                }
            } else {
                self.block_dependents(plan, node, &mut waiting, &mut outcomes);
            }
        }
    }

    /// Marks everything `stayed` uses, transitively, as staying too: it will not be attempted.
    fn block_dependents(
        &self,
        plan: &Plan,
        stayed: NodeIndex,
        waiting: &mut HashMap<NodeIndex, usize>,
        outcomes: &mut HashMap<NodeIndex, Outcome>,
    ) {
        let graph = &plan.graph;
        let mut stack = vec![stayed];
        while let Some(user) = stack.pop() {
            for edge in graph.edges_directed(user, Direction::Outgoing) {
                let next = edge.target();
                if waiting.remove(&next).is_none() {
                    continue; // not actionable, or already blocked through another user
                }
                let by = graph[user].resource.key.clone();
                // An owned resource released instead of removed is a user the janitor will not
                // delete: "in use". Anything else that stayed is a failure upstream: "blocked".
                let released = matches!(
                    outcomes.get(&user),
                    Some(Outcome::Left(LeftReason::InUse { by: itself })) if *itself == by
                );
                let reason = if released {
                    LeftReason::InUse { by }
                } else {
                    LeftReason::Blocked { by }
                };
                let outcome = Outcome::Left(reason);
                self.finish(&graph[next], task_of(&graph[next]), &outcome, Duration::ZERO);
                outcomes.insert(next, outcome);
                stack.push(next);
            }
        }
    }

    fn emit(&self, event: Event) {
        self.events.on_event(&event);
    }

    fn finish(&self, node: &PlanNode, task: Task, outcome: &Outcome, elapsed: Duration) {
        self.emit(Event::Finished {
            key: node.resource.key.clone(),
            task,
            outcome: outcome.clone(),
            elapsed,
        });
    }

    async fn run<'p>(
        &self,
        index: NodeIndex,
        node: &'p PlanNode,
        reads: &StatusReads<'p>,
    ) -> (NodeIndex, Outcome) {
        let mut run = NodeRun {
            node,
            task: task_of(node),
            started: Instant::now(),
            attempt: 0,
        };
        let outcome = self.run_node(&mut run, reads).await.unwrap_or_else(Outcome::Left);
        self.finish(node, run.task, &outcome, run.started.elapsed());
        (index, outcome)
    }

    fn check_continue(&self) -> Result<(), LeftReason> {
        if self.cancel.is_cancelled() {
            return Err(LeftReason::Shutdown);
        }
        if Instant::now() >= self.settings.deadline {
            return Err(LeftReason::PassDeadline);
        }
        Ok(())
    }

    /// Waits for a global and a per-cloud permit.
    async fn permits(&self, cloud: &str) -> Permits<'_> {
        // The semaphores are never closed, so acquiring cannot fail; if it somehow did, running the
        // call unbounded is safer than dropping it.
        let global = self.global.acquire().await.ok();
        let cloud = match self.per_cloud.get(cloud) {
            Some(limit) => Some(limit.acquire().await),
            None => None,
        };
        Permits {
            _global: global,
            cloud,
        }
    }

    /// Tells the cloud's limit how a call went: congested when it failed so, or when the provider
    /// met a 429, 503 or no answer meanwhile (reads it retried inside included).
    fn after_call(
        &self,
        cloud: &str,
        provider: &dyn Provider,
        permits: &Permits<'_>,
        throttled_before: u64,
        health: Health,
    ) {
        let health = if provider.throttled() > throttled_before {
            Health::Congested
        } else {
            health
        };
        let (Some(limit), Some(slot)) = (self.per_cloud.get(cloud), permits.cloud.as_ref()) else {
            return;
        };
        if let Some(limit) = limit.record(slot, health) {
            self.emit(Event::ConcurrencyChanged {
                cloud: cloud.to_string(),
                limit,
            });
        }
    }

    /// Holds a global and a per-cloud permit around one API call.
    async fn call<T>(
        &self,
        cloud: &str,
        provider: &dyn Provider,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        let permits = self.permits(cloud).await;
        let before = provider.throttled();
        let result = self.until_deadline(call).await.unwrap_or_else(Err);
        let health = match &result {
            Ok(_) => Health::Healthy,
            Err(error) => health_of(error),
        };
        self.after_call(cloud, provider, &permits, before, health);
        result
    }

    /// Runs `call` no longer than the pass deadline: a server's long `Retry-After`, or an answer
    /// that never comes, cannot hold the pass past it.
    async fn until_deadline<T>(
        &self,
        call: impl std::future::Future<Output = T>,
    ) -> Result<T, ProviderError> {
        let started = Instant::now();
        tokio::time::timeout_at(self.settings.deadline, call)
            .await
            .map_err(|_| ProviderError::Deadline {
                operation: "a call at the pass deadline".to_string(),
                waited: started.elapsed(),
                last_state: "in flight".to_string(),
            })
    }

    async fn sleep_or_stop(&self, delay: Duration) -> Result<(), LeftReason> {
        let wake = (Instant::now() + delay).min(self.settings.deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = self.cancel.cancelled() => {}
        }
        self.check_continue()
    }

    fn jitter() -> f64 {
        rand::random::<f64>()
    }

    async fn run_node<'p>(
        &self,
        run: &mut NodeRun<'p>,
        reads: &StatusReads<'p>,
    ) -> Result<Outcome, LeftReason> {
        let node = run.node;
        let resource = &node.resource;
        let key = &resource.key;
        let Some(provider) = self.providers.get(&key.cloud).cloned() else {
            return Err(LeftReason::PermanentError {
                message: format!("no provider for cloud {}", key.cloud),
            });
        };
        let owned = run.task == Task::AwaitRemoval;
        let mut busy_since: Option<Instant> = None;
        let mut counted_delete = false;
        loop {
            self.check_continue()?;
            // The status read right before the delete: the plan is minutes old by now. Batched
            // with others that became ready together, never older than this question, and inside
            // the admission window with the delete, so at most a window of deletes older than it.
            // The provider retries reads itself; a status read that still fails ends the node.
            let purpose = if owned {
                Purpose::Watch
            } else {
                Purpose::BeforeDelete
            };
            let (observed, admitted) = reads.observe(self, provider.as_ref(), resource, purpose).await;
            // (At the deadline, as one the deadline ended.)
            let observed = observed.map_err(|error| {
                self.check_continue()
                    .err()
                    .unwrap_or_else(|| left_after(&error, GiveUpReason::AttemptsExhausted))
            })?;
            match observed {
                Observed::Gone if owned => return Ok(Outcome::RemovedWithOwner),
                Observed::Gone => return Ok(Outcome::AlreadyGone),
                Observed::Failed(state) => return Err(LeftReason::PermanentError { message: state }),
                Observed::Busy(state) => {
                    drop(admitted);
                    let since = *busy_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= self.settings.busy_timeout {
                        return Err(LeftReason::Busy {
                            state: describe_state(&state),
                        });
                    }
                    let wait = self.settings.poll_interval.max(Duration::from_millis(50));
                    self.sleep_or_stop(wait.min(self.settings.busy_timeout)).await?;
                    continue;
                }
                Observed::Ready if owned => {
                    // Its owner is gone but it is still here: it was released, not removed, and the
                    // janitor does not delete what it did not select. What it uses stays with it.
                    return Err(LeftReason::InUse { by: key.clone() });
                }
                Observed::Ready => {}
            }
            busy_since = None;
            if !counted_delete {
                if self.deletes_issued.fetch_add(1, Ordering::SeqCst) >= self.settings.max_deletes {
                    return Err(LeftReason::DeleteCap);
                }
                counted_delete = true;
            }
            self.emit(Event::Attempted {
                key: key.clone(),
                attempt: run.attempt + 1,
            });
            let deleted = self
                .call(&key.cloud, provider.as_ref(), provider.delete(resource))
                .await;
            drop(admitted);
            match deleted {
                Ok(DeleteOutcome::Completed) => return Ok(Outcome::Deleted),
                Ok(DeleteOutcome::Accepted) => match self.await_gone(provider.as_ref(), node, reads).await {
                    Ok(()) => return Ok(Outcome::Deleted),
                    Err(WaitEnd::Failed(state)) => return Err(LeftReason::PermanentError { message: state }),
                    Err(WaitEnd::Error(error)) => self.after_failure(run, &error).await?,
                },
                Err(error) => self.after_failure(run, &error).await?,
            }
        }
    }

    /// Applies the policy to a failed call: sleeps out a requeue or retry, or ends the node.
    async fn after_failure(&self, run: &mut NodeRun<'_>, error: &ProviderError) -> Result<(), LeftReason> {
        run.attempt += 1;
        let key = &run.node.resource.key;
        let attempt = run.attempt;
        match decide(error.class(), attempt, &self.settings.retry, Self::jitter()) {
            // A 404 means the next status read will see it gone: loop once more to confirm.
            Decision::Done => Ok(()),
            Decision::Requeue(after) => {
                self.emit(Event::Requeued {
                    key: key.clone(),
                    attempt,
                    after,
                    error: error.to_string(),
                });
                self.sleep_or_stop(after).await
            }
            Decision::Retry(after) => {
                self.emit(Event::Retrying {
                    key: key.clone(),
                    attempt,
                    after,
                    error: error.to_string(),
                });
                self.sleep_or_stop(after).await
            }
            Decision::GiveUp(reason) => Err(left_after(error, reason)),
        }
    }

    /// Polls an accepted asynchronous delete until the resource is gone. A missing or empty status,
    /// or any state but a failed one, means "not done yet", up to `delete_timeout`.
    async fn await_gone<'p>(
        &self,
        provider: &dyn Provider,
        node: &'p PlanNode,
        reads: &StatusReads<'p>,
    ) -> Result<(), WaitEnd> {
        let resource = &node.resource;
        let remaining = self.settings.deadline.saturating_duration_since(Instant::now());
        // Nothing asynchronous is done the moment it is accepted: the first look waits an interval.
        let policy = PollPolicy::new(
            self.settings.poll_interval,
            self.settings.delete_timeout.min(remaining),
        )
        .first_look_after(self.settings.poll_interval);
        let result = poll_until(policy, || async {
            match reads.observe(self, provider, resource, Purpose::Watch).await.0 {
                Ok(Observed::Gone) => Ok(Poll::Done(())),
                Ok(Observed::Failed(state)) => Err(WaitEnd::Failed(state)),
                Ok(Observed::Busy(state)) => Ok(Poll::Pending(describe_state(&state))),
                Ok(Observed::Ready) => Ok(Poll::Pending("delete accepted, not started".to_string())),
                Err(error) => match error.class() {
                    ErrorClass::NotFound => Ok(Poll::Done(())),
                    ErrorClass::Transient | ErrorClass::RateLimited { .. } => {
                        Ok(Poll::Pending(error.to_string()))
                    }
                    _ => Err(WaitEnd::Error(error)),
                },
            }
        })
        .await?;
        result.map_err(|timeout| {
            WaitEnd::Error(ProviderError::Deadline {
                operation: format!("delete of {}", resource.key),
                waited: timeout.waited,
                last_state: timeout.last_state,
            })
        })
    }
}

enum WaitEnd {
    Failed(String),
    Error(ProviderError),
}

/// What a failed call says about the cloud's load.
fn health_of(error: &ProviderError) -> Health {
    match error {
        ProviderError::Exhausted { source, .. } | ProviderError::Listing { source, .. } => health_of(source),
        ProviderError::Network { .. } => Health::Congested,
        other => match other.class() {
            ErrorClass::RateLimited { .. } => Health::Congested,
            // A 409 or a 404 is the API answering promptly.
            ErrorClass::NotFound | ErrorClass::Conflict | ErrorClass::Permanent => Health::Healthy,
            ErrorClass::Transient => Health::Neutral,
        },
    }
}

/// Why a resource stays after `error` ended the attempts at it.
fn left_after(error: &ProviderError, reason: GiveUpReason) -> LeftReason {
    let message = error.to_string();
    match (reason, error.class()) {
        (_, ErrorClass::Permanent) | (GiveUpReason::Permanent, _) => LeftReason::PermanentError { message },
        (GiveUpReason::AttemptsExhausted, ErrorClass::Conflict) => LeftReason::Conflict { message },
        (GiveUpReason::AttemptsExhausted, _) => LeftReason::RetriesExhausted { message },
    }
}

fn task_of(node: &PlanNode) -> Task {
    match node.disposition {
        Disposition::AwaitRemoval { .. } => Task::AwaitRemoval,
        _ => Task::Delete,
    }
}

fn describe_state(state: &str) -> String {
    if state.trim().is_empty() {
        "empty status".to_string()
    } else {
        state.to_string()
    }
}

#[cfg(test)]
mod tests;
