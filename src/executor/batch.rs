//! Batched status reads: resources whose status one request can read together (same cloud, same
//! [`BatchKey`]) wait in a queue, and one [`Provider::observe_many`] call answers all of them.
//!
//! Freshness is the point of the design: a read is answered only by a round that starts after the
//! read was asked for. A round in flight never takes new members; whoever asks while it runs waits
//! for the next one. So no answer is older than the question, and none serves two questions.
//!
//! A read before a delete also needs a place in its cloud's admission window (see
//! [`Admission`]): the window bounds how many resources stand between their read and the end of
//! their delete, so no read waits long for its delete. Rounds take reads only while places are
//! free, and wait for a cloud's worth of them (or for everything waiting) before they start: a
//! full pipeline of deletes makes reads pile up, and one request then answers the pile.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use futures::stream::{FuturesUnordered, StreamExt};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

use super::{Executor, Health};
use crate::model::{Observed, Resource};
use crate::provider::{BatchKey, Provider, ProviderError};

/// At most this many resources in one round: a Neutron `id=` filter of this many UUIDs keeps the
/// URL near 4 KiB, well inside what proxies and servers accept.
pub(super) const MAX_BATCH: usize = 100;

/// One cloud's admission window: places for resources between their status read and the end of
/// their delete call, and how many a round waits for.
pub(super) struct Admission {
    places: Arc<Semaphore>,
    /// Rung whenever a place comes free, so waiting rounds can start.
    freed: Arc<Notify>,
    /// A round of reads before deletes starts once this many places are free (or all it needs).
    round_size: usize,
}

impl Admission {
    /// A window of `places`, rounds of `round_size`.
    pub(super) fn new(places: usize, round_size: usize, freed: Arc<Notify>) -> Self {
        Admission {
            places: Arc::new(Semaphore::new(places.max(1))),
            freed,
            round_size: round_size.clamp(1, places.max(1)),
        }
    }

    fn try_place(&self) -> Option<Place> {
        let permit = self.places.clone().try_acquire_owned().ok()?;
        Some(Place {
            _permit: permit,
            freed: self.freed.clone(),
        })
    }

    /// Waits for a place (for reads not batched).
    pub(super) async fn place(&self) -> Option<Place> {
        let permit = self.places.clone().acquire_owned().await.ok()?;
        Some(Place {
            _permit: permit,
            freed: self.freed.clone(),
        })
    }
}

/// A place in the admission window, given back when dropped.
pub(super) struct Place {
    _permit: OwnedSemaphorePermit,
    freed: Arc<Notify>,
}

impl Drop for Place {
    fn drop(&mut self) {
        // The permit is released right after this: a round waiting for it is woken.
        self.freed.notify_one();
    }
}

/// Why a status is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Purpose {
    /// Right before a delete: needs a place in the admission window.
    BeforeDelete,
    /// Waiting for a resource to go (an accepted delete, an owner's removal).
    Watch,
}

/// What a read gets: the state, and its place when it was read before a delete.
pub(super) type Answer = (Result<Observed, ProviderError>, Option<Place>);

/// One status read waiting for its round.
pub(super) struct Read<'a> {
    key: (&'a str, BatchKey),
    purpose: Purpose,
    resource: &'a Resource,
    answer: oneshot::Sender<Answer>,
}

/// Where nodes ask for batched status reads; the queue closes when this is dropped.
pub(super) struct StatusReads<'a> {
    sender: mpsc::UnboundedSender<Read<'a>>,
}

impl<'a> StatusReads<'a> {
    pub(super) fn new() -> (Self, mpsc::UnboundedReceiver<Read<'a>>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (StatusReads { sender }, receiver)
    }

    /// Reads `resource`'s state in the next round of its batch key that takes it, or alone
    /// (holding a permit, as any call) when the provider batches no reads of it.
    pub(super) async fn observe(
        &self,
        executor: &Executor,
        provider: &dyn Provider,
        resource: &'a Resource,
        purpose: Purpose,
    ) -> Answer {
        let cloud = resource.key.cloud.as_str();
        let Some(key) = provider.batch_key(resource) else {
            let place = match (purpose, executor.admission.get(cloud)) {
                (Purpose::BeforeDelete, Some(admission)) => admission.place().await,
                _ => None,
            };
            return (
                executor.call(cloud, provider, provider.observe(resource)).await,
                place,
            );
        };
        let (answer, answered) = oneshot::channel();
        let read = Read {
            key: (cloud, key),
            purpose,
            resource,
            answer,
        };
        if self.sender.send(read).is_err() {
            return (Err(no_answer(resource)), None);
        }
        answered
            .await
            .unwrap_or_else(|_| (Err(no_answer(resource)), None))
    }
}

/// A read the batcher dropped without answering (it never does while the pass runs).
fn no_answer(resource: &Resource) -> ProviderError {
    ProviderError::Decode {
        url: resource.key.to_string(),
        message: "the status read was not answered".to_string(),
    }
}

/// The reads of one batch key waiting for a round.
#[derive(Default)]
struct Waiting<'a> {
    before_delete: VecDeque<Read<'a>>,
    watch: Vec<Read<'a>>,
}

impl Executor {
    /// Runs rounds until the queue is closed and empty. A key with no round in flight starts one
    /// when it has watches waiting, or when enough admission places are free for the reads before
    /// deletes it has waiting (see the module documentation).
    pub(super) async fn run_status_rounds<'a>(&self, mut reads: mpsc::UnboundedReceiver<Read<'a>>) {
        let mut waiting: HashMap<(&'a str, BatchKey), Waiting<'a>> = HashMap::new();
        let mut in_flight: HashSet<(&'a str, BatchKey)> = HashSet::new();
        let mut rounds = FuturesUnordered::new();
        let mut open = true;
        loop {
            let keys: Vec<(&'a str, BatchKey)> = waiting.keys().cloned().collect();
            for key in keys {
                if in_flight.contains(&key) {
                    continue;
                }
                let Some(queue) = waiting.get_mut(&key) else {
                    continue;
                };
                let batch = self.take_round(key.0, queue);
                if !batch.is_empty() {
                    in_flight.insert(key.clone());
                    rounds.push(self.status_round(key.clone(), batch));
                }
            }
            waiting.retain(|_, queue| !queue.before_delete.is_empty() || !queue.watch.is_empty());
            if !open && rounds.is_empty() && waiting.is_empty() {
                return;
            }
            tokio::select! {
                read = reads.recv(), if open => match read {
                    Some(read) => {
                        // Everything asked for by now joins the rounds about to start.
                        enqueue(&mut waiting, read);
                        while let Ok(read) = reads.try_recv() {
                            enqueue(&mut waiting, read);
                        }
                    }
                    None => open = false,
                },
                Some(key) = rounds.next(), if !rounds.is_empty() => {
                    in_flight.remove(&key);
                }
                _ = self.freed.notified(), if !waiting.is_empty() => {}
            }
        }
    }

    /// The next round of a key: every watch waiting, and the oldest reads before deletes that get
    /// a place, once enough places are free; nothing when it should wait.
    fn take_round<'a>(&self, cloud: &str, queue: &mut Waiting<'a>) -> Vec<(Read<'a>, Option<Place>)> {
        let mut batch: Vec<(Read<'a>, Option<Place>)> = Vec::new();
        let wanted = queue.before_delete.len().min(MAX_BATCH);
        if let Some(admission) = self.admission.get(cloud) {
            let free = admission.places.available_permits();
            if wanted > 0 && (free >= wanted.min(admission.round_size) || !queue.watch.is_empty()) {
                while batch.len() < wanted {
                    let Some(place) = admission.try_place() else {
                        break;
                    };
                    let Some(read) = queue.before_delete.pop_front() else {
                        break;
                    };
                    batch.push((read, Some(place)));
                }
            }
        }
        let room = MAX_BATCH.saturating_sub(batch.len()).min(queue.watch.len());
        batch.extend(queue.watch.drain(..room).map(|read| (read, None)));
        batch
    }

    /// One round: a single `observe_many` call under one permit, its answers handed out in order.
    async fn status_round<'a>(
        &self,
        key: (&'a str, BatchKey),
        batch: Vec<(Read<'a>, Option<Place>)>,
    ) -> (&'a str, BatchKey) {
        let cloud = key.0;
        let resources: Vec<&Resource> = batch.iter().map(|(read, _)| read.resource).collect();
        let answers = match self.providers.get(cloud) {
            Some(provider) => {
                let permits = self.permits(cloud).await;
                let before = provider.throttled();
                let answers = match self.until_deadline(provider.observe_many(&resources)).await {
                    Ok(answers) => answers,
                    Err(deadline) => resources.iter().map(|_| Err(deadline.duplicate())).collect(),
                };
                let health = answers
                    .iter()
                    .filter_map(|answer| answer.as_ref().err())
                    .map(super::health_of)
                    .find(|health| *health != Health::Healthy)
                    .unwrap_or(Health::Healthy);
                self.after_call(cloud, provider.as_ref(), &permits, before, health);
                answers
            }
            None => Vec::new(),
        };
        let mut answers = answers.into_iter();
        for (read, place) in batch {
            let answer = answers.next().unwrap_or_else(|| Err(no_answer(read.resource)));
            // A node that stopped waiting (cancelled) needs no answer.
            let _ = read.answer.send((answer, place));
        }
        key
    }
}

fn enqueue<'a>(waiting: &mut HashMap<(&'a str, BatchKey), Waiting<'a>>, read: Read<'a>) {
    let queue = waiting.entry(read.key.clone()).or_default();
    match read.purpose {
        Purpose::BeforeDelete => queue.before_delete.push_back(read),
        Purpose::Watch => queue.watch.push(read),
    }
}
