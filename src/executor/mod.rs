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
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::events::{Event, EventSink, Task};
use crate::model::{DeleteOutcome, Observed};
use crate::outcome::{LeftReason, Outcome};
use crate::planner::{Disposition, Plan, PlanNode};
use crate::policy::{decide, Decision, GiveUpReason, RetryPolicy};
use crate::poll::{poll_until, Poll, PollPolicy};
use crate::provider::{ErrorClass, Provider, ProviderError};

/// How the executor paces and bounds itself.
#[derive(Debug, Clone)]
pub struct ExecutorSettings {
    pub retry: RetryPolicy,
    /// Calls in flight across every cloud.
    pub global_concurrency: usize,
    /// Calls in flight against one cloud.
    pub per_cloud_concurrency: usize,
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
    global: Arc<Semaphore>,
    per_cloud: HashMap<String, Arc<Semaphore>>,
    deletes_issued: AtomicUsize,
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
        let per_cloud = providers
            .keys()
            .map(|cloud| {
                (
                    cloud.clone(),
                    Arc::new(Semaphore::new(settings.per_cloud_concurrency.max(1))),
                )
            })
            .collect();
        Executor {
            global: Arc::new(Semaphore::new(settings.global_concurrency.max(1))),
            providers,
            settings,
            events,
            cancel,
            per_cloud,
            deletes_issued: AtomicUsize::new(0),
        }
    }

    /// Runs every actionable node of the plan. A node starts once all its actionable predecessors are
    /// gone; a node that stays leaves everything it uses in place (reported as blocked). Every
    /// actionable node ends with exactly one [`Event::Finished`].
    pub async fn execute(&self, plan: &Plan) {
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
                running.push(self.run(node, &graph[node]));
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
                            running.push(self.run(next, &graph[next]));
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

    async fn run(&self, index: NodeIndex, node: &PlanNode) -> (NodeIndex, Outcome) {
        let mut run = NodeRun {
            node,
            task: task_of(node),
            started: Instant::now(),
            attempt: 0,
        };
        let outcome = self.run_node(&mut run).await.unwrap_or_else(Outcome::Left);
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

    /// Holds a global and a per-cloud permit around one API call, which ends at the pass deadline
    /// at the latest: a provider's own waits (a server's `Retry-After`, a task's) cannot hold the
    /// pass past it.
    async fn call<T>(
        &self,
        cloud: &str,
        call: impl std::future::Future<Output = Result<T, ProviderError>>,
    ) -> Result<T, ProviderError> {
        // The semaphores are never closed, so acquiring cannot fail; if it somehow did, running the
        // call unbounded is safer than dropping it.
        let _global = self.global.acquire().await.ok();
        let _cloud = match self.per_cloud.get(cloud) {
            Some(semaphore) => semaphore.acquire().await.ok(),
            None => None,
        };
        let started = Instant::now();
        match tokio::time::timeout_at(self.settings.deadline, call).await {
            Ok(result) => result,
            Err(_) => Err(ProviderError::Deadline {
                operation: "a call at the pass deadline".to_string(),
                waited: started.elapsed(),
                last_state: "in flight".to_string(),
            }),
        }
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

    async fn run_node(&self, run: &mut NodeRun<'_>) -> Result<Outcome, LeftReason> {
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
            // The status read right before the delete: the plan is minutes old by now.
            // The provider retries reads itself; a status read that still fails ends the node
            // (at the deadline, as one the deadline ended).
            let observed = self
                .call(&key.cloud, provider.observe(resource))
                .await
                .map_err(|error| {
                    self.check_continue()
                        .err()
                        .unwrap_or_else(|| left_after(&error, GiveUpReason::AttemptsExhausted))
                })?;
            match observed {
                Observed::Gone if owned => return Ok(Outcome::RemovedWithOwner),
                Observed::Gone => return Ok(Outcome::AlreadyGone),
                Observed::Failed(state) => return Err(LeftReason::PermanentError { message: state }),
                Observed::Busy(state) => {
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
            match self.call(&key.cloud, provider.delete(resource)).await {
                Ok(DeleteOutcome::Completed) => return Ok(Outcome::Deleted),
                Ok(DeleteOutcome::Accepted) => match self.await_gone(provider.as_ref(), node).await {
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
    async fn await_gone(&self, provider: &dyn Provider, node: &PlanNode) -> Result<(), WaitEnd> {
        let resource = &node.resource;
        let remaining = self.settings.deadline.saturating_duration_since(Instant::now());
        let policy = PollPolicy::new(
            self.settings.poll_interval,
            self.settings.delete_timeout.min(remaining),
        );
        let result = poll_until(policy, || async {
            match self.call(&resource.key.cloud, provider.observe(resource)).await {
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
