//! What the executor tells the world as it works: typed [`Event`]s sent to an [`EventSink`]. The
//! metrics, the logs, the demo's live display and the pass report are subscribers; the executor
//! knows none of them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::model::ResourceKey;
use crate::outcome::Outcome;

/// What the executor does with a node: delete it, or wait for its owner to remove it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    Delete,
    AwaitRemoval,
}

/// One step of the executor's work on one resource.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A delete call is about to be made; `attempt` counts from 1.
    Attempted { key: ResourceKey, attempt: u32 },
    /// A delete met a conflict and goes back into the queue for `after`.
    Requeued {
        key: ResourceKey,
        attempt: u32,
        after: Duration,
        error: String,
    },
    /// A call failed in a way that passes (5xx, 429, a timeout) and is tried again after `after`.
    Retrying {
        key: ResourceKey,
        attempt: u32,
        after: Duration,
        error: String,
    },
    /// The resource's part in this pass is over: gone, or left with a reason. `elapsed` runs from
    /// the moment the executor started on it (zero for one blocked before it started).
    Finished {
        key: ResourceKey,
        task: Task,
        outcome: Outcome,
        elapsed: Duration,
    },
    /// A cloud's adaptive concurrency limit moved to `limit`.
    ConcurrencyChanged { cloud: String, limit: usize },
}

impl Event {
    /// The resource the event is about, when it is about one.
    pub fn key(&self) -> Option<&ResourceKey> {
        match self {
            Event::Attempted { key, .. }
            | Event::Requeued { key, .. }
            | Event::Retrying { key, .. }
            | Event::Finished { key, .. } => Some(key),
            Event::ConcurrencyChanged { .. } => None,
        }
    }
}

/// A subscriber to the executor's events. Called on the executor's task: keep it quick.
pub trait EventSink: Send + Sync {
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> EventSink for F {
    fn on_event(&self, event: &Event) {
        self(event);
    }
}

/// Sends every event to each of several subscribers, in order.
#[derive(Clone, Default)]
pub struct Fanout(Vec<Arc<dyn EventSink>>);

impl Fanout {
    pub fn new() -> Self {
        Fanout::default()
    }

    /// Adds a subscriber.
    pub fn with(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.0.push(sink);
        self
    }
}

impl EventSink for Fanout {
    fn on_event(&self, event: &Event) {
        for sink in &self.0 {
            sink.on_event(event);
        }
    }
}

/// What the pass report needs from the executor: each resource's outcome and how often a conflict
/// requeued it. A subscriber, so the report and the metrics hear the same events.
#[derive(Debug, Default)]
pub struct Recorder {
    recorded: Mutex<Recorded>,
}

/// The outcomes and requeue counts a [`Recorder`] heard.
#[derive(Debug, Default, Clone)]
pub struct Recorded {
    pub outcomes: HashMap<ResourceKey, Outcome>,
    pub requeues: HashMap<ResourceKey, u32>,
}

impl Recorder {
    /// What has been heard so far.
    pub fn recorded(&self) -> Recorded {
        self.recorded
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl EventSink for Recorder {
    fn on_event(&self, event: &Event) {
        let mut recorded = self.recorded.lock().unwrap_or_else(PoisonError::into_inner);
        match event {
            Event::Requeued { key, .. } => *recorded.requeues.entry(key.clone()).or_default() += 1,
            Event::Finished { key, outcome, .. } => {
                recorded.outcomes.insert(key.clone(), outcome.clone());
            }
            Event::Attempted { .. } | Event::Retrying { .. } | Event::ConcurrencyChanged { .. } => {}
        }
    }
}

/// Logs every event with `tracing`, one line each, with the resource's cloud, kind and id as fields.
#[derive(Debug, Default, Clone, Copy)]
pub struct LogSink;

impl EventSink for LogSink {
    fn on_event(&self, event: &Event) {
        let Some(key) = event.key() else {
            if let Event::ConcurrencyChanged { cloud, limit } = event {
                tracing::info!(%cloud, limit, "concurrency limit changed");
            }
            return;
        };
        let (cloud, kind, id) = (&key.cloud, key.kind, &key.id);
        match event {
            Event::Attempted { attempt, .. } => {
                tracing::debug!(%cloud, %kind, %id, attempt, "deleting")
            }
            Event::Requeued { after, error, .. } => {
                tracing::warn!(%cloud, %kind, %id, %error, delay = ?after, "delete conflicted; requeued")
            }
            Event::Retrying { after, error, .. } => {
                tracing::info!(%cloud, %kind, %id, %error, delay = ?after, "call failed; retrying")
            }
            Event::Finished {
                outcome: Outcome::Left(reason),
                ..
            } => tracing::warn!(%cloud, %kind, %id, reason = %reason, "left in place"),
            Event::Finished { outcome, elapsed, .. } => {
                tracing::info!(%cloud, %kind, %id, outcome = outcome.label(), elapsed = ?elapsed, "done")
            }
            Event::ConcurrencyChanged { .. } => {}
        }
    }
}
