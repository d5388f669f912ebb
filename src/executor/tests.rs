//! The executor against a scripted provider: order, requeues, isolation of failures, polling,
//! bounds and cancellation, all on a paused clock.
#![allow(clippy::cloned_ref_to_slice_refs)] // `&[key.clone()]` reads better in fixtures

use std::collections::VecDeque;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::model::fixtures::{key, res};
use crate::model::{Kind, Resource};
use crate::selection::Verdict;

type Script<T> = Mutex<HashMap<String, VecDeque<T>>>;

/// The next scripted answer for `id`, if any is left.
fn next<T>(script: &Script<T>, id: &str) -> Option<T> {
    script.lock().unwrap().get_mut(id).and_then(VecDeque::pop_front)
}

/// A provider that plays back scripted answers per resource id, and records calls. Once a script
/// runs out, observe answers Gone after a delete and Ready before; delete answers Completed.
#[derive(Default)]
struct Scripted {
    observe: Script<Result<Observed, ErrorClass>>,
    delete: Script<Result<DeleteOutcome, ErrorClass>>,
    calls: Mutex<Vec<String>>,
    deleted: Mutex<Vec<String>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Reads status in batches (one key for everything) when set.
    batched: bool,
    /// Each batch: when it started and which ids it read.
    rounds: Mutex<Vec<(Instant, Vec<String>)>>,
    /// When each delete call returned, by id.
    delete_done: Mutex<Vec<(String, Instant)>>,
    /// A batch answers nothing for this id.
    unanswered: Option<String>,
    /// Answers that asked to slow down so far.
    throttled: std::sync::atomic::AtomicU64,
}

impl Scripted {
    fn on_observe(self, id: &str, answers: Vec<Result<Observed, ErrorClass>>) -> Self {
        self.observe
            .lock()
            .unwrap()
            .insert(id.to_string(), answers.into());
        self
    }
    fn on_delete(self, id: &str, answers: Vec<Result<DeleteOutcome, ErrorClass>>) -> Self {
        self.delete.lock().unwrap().insert(id.to_string(), answers.into());
        self
    }
    fn error(class: ErrorClass) -> ProviderError {
        ProviderError::Api {
            class,
            method: "DELETE".into(),
            url: "http://sim/x".into(),
            status: 409,
            message: "scripted".into(),
        }
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    /// The delete calls made, in order.
    fn deletes(&self) -> Vec<String> {
        self.calls()
            .into_iter()
            .filter(|c| c.starts_with("delete"))
            .collect()
    }
    fn batched() -> Self {
        Scripted {
            batched: true,
            ..Scripted::default()
        }
    }
    /// The next scripted state of `id`, as `observe` and `observe_many` both answer it.
    fn state_of(&self, id: &str) -> Result<Observed, ProviderError> {
        match next(&self.observe, id) {
            Some(answer) => answer.map_err(Self::error),
            None if self.deleted.lock().unwrap().iter().any(|d| d == id) => Ok(Observed::Gone),
            None => Ok(Observed::Ready),
        }
    }
    fn rounds_with(&self, id: &str) -> Vec<Instant> {
        self.rounds
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, ids)| ids.iter().any(|i| i == id))
            .map(|(at, _)| *at)
            .collect()
    }
}

#[async_trait]
impl Provider for Scripted {
    fn cloud(&self) -> &str {
        "ci"
    }
    fn provider_type(&self) -> &'static str {
        "scripted"
    }
    async fn discover(&self) -> Result<Vec<Resource>, ProviderError> {
        Ok(Vec::new())
    }
    async fn observe(&self, resource: &Resource) -> Result<Observed, ProviderError> {
        let id = &resource.key.id;
        self.calls.lock().unwrap().push(format!("observe {id}"));
        self.state_of(id)
    }
    fn batch_key(&self, _resource: &Resource) -> Option<crate::provider::BatchKey> {
        self.batched.then(|| "all".into())
    }
    async fn observe_many(&self, batch: &[&Resource]) -> Vec<Result<Observed, ProviderError>> {
        let ids: Vec<String> = batch.iter().map(|r| r.key.id.clone()).collect();
        self.calls
            .lock()
            .unwrap()
            .push(format!("round {}", ids.join(",")));
        self.rounds.lock().unwrap().push((Instant::now(), ids.clone()));
        // A batch read takes as long as a delete, so later questions queue behind it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        ids.iter()
            .filter(|id| self.unanswered.as_deref() != Some(id.as_str()))
            .map(|id| self.state_of(id))
            .collect()
    }
    fn throttled(&self) -> u64 {
        self.throttled.load(Ordering::SeqCst)
    }
    async fn delete(&self, resource: &Resource) -> Result<DeleteOutcome, ProviderError> {
        let id = &resource.key.id;
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(100)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.calls.lock().unwrap().push(format!("delete {id}"));
        let answer = next(&self.delete, id).unwrap_or(Ok(DeleteOutcome::Completed));
        if answer.is_ok() {
            self.deleted.lock().unwrap().push(id.clone());
        }
        if answer == Err(ErrorClass::RateLimited { retry_after: None }) {
            self.throttled.fetch_add(1, Ordering::SeqCst);
        }
        self.delete_done
            .lock()
            .unwrap()
            .push((id.clone(), Instant::now()));
        answer.map_err(Self::error)
    }
}

fn all_selected(resources: Vec<Resource>) -> Plan {
    let verdicts = resources.iter().map(|_| Verdict::Selected).collect();
    Plan::build(resources, verdicts)
}

fn settings() -> ExecutorSettings {
    ExecutorSettings {
        retry: RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(8),
        },
        global_concurrency: 8,
        per_cloud: LimitPolicy::Fixed(4),
        busy_timeout: Duration::from_secs(60),
        delete_timeout: Duration::from_secs(120),
        poll_interval: Duration::from_secs(1),
        max_deletes: 100,
        deadline: Instant::now() + Duration::from_secs(3600),
    }
}

/// Every event of a run, and each resource's outcome by id.
struct Run {
    outcomes: HashMap<String, Outcome>,
    events: Vec<Event>,
}

impl Run {
    fn requeues(&self, id: &str) -> usize {
        self.events
            .iter()
            .filter(|e| matches!(e, Event::Requeued { key, .. } if key.id == id))
            .count()
    }

    fn finished(&self, kind: Kind, label: &str) -> usize {
        self.events
            .iter()
            .filter(|e| {
                matches!(e, Event::Finished { key, outcome, .. }
                    if key.kind == kind && outcome.label() == label)
            })
            .count()
    }
}

async fn execute_with(
    provider: Arc<Scripted>,
    plan: &Plan,
    settings: ExecutorSettings,
    cancel: CancellationToken,
) -> Run {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = {
        let events = events.clone();
        Arc::new(move |event: &Event| events.lock().unwrap().push(event.clone()))
    };
    let providers: HashMap<String, Arc<dyn Provider>> =
        HashMap::from([("ci".to_string(), provider as Arc<dyn Provider>)]);
    Executor::new(providers, settings, sink, cancel)
        .execute(plan)
        .await;
    let events = events.lock().unwrap().clone();
    let outcomes = events
        .iter()
        .filter_map(|event| match event {
            Event::Finished { key, outcome, .. } => Some((key.id.clone(), outcome.clone())),
            _ => None,
        })
        .collect();
    Run { outcomes, events }
}

async fn execute(provider: Arc<Scripted>, plan: &Plan, settings: ExecutorSettings) -> Run {
    execute_with(provider, plan, settings, CancellationToken::new()).await
}

#[tokio::test(start_paused = true)]
async fn a_conflict_is_requeued_until_the_blocker_clears() {
    let sg = key(Kind::SecurityGroup, "sg");
    let plan = all_selected(vec![
        res(Kind::Port, "port", &[sg.clone()]),
        res(Kind::SecurityGroup, "sg", &[]),
    ]);
    let provider = Arc::new(Scripted::default().on_delete(
        "sg",
        vec![
            Err(ErrorClass::Conflict),
            Err(ErrorClass::Conflict),
            Ok(DeleteOutcome::Completed),
        ],
    ));
    let run = execute(provider.clone(), &plan, settings()).await;
    assert_eq!(run.outcomes["sg"], Outcome::Deleted);
    assert_eq!(run.outcomes["port"], Outcome::Deleted);
    assert_eq!(run.requeues("sg"), 2);
    let calls = provider.calls();
    let port_deleted = calls.iter().position(|c| c == "delete port").unwrap();
    let first_sg_delete = calls.iter().position(|c| c == "delete sg").unwrap();
    assert!(
        port_deleted < first_sg_delete,
        "the port goes before its security group: {calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| *c == "delete sg").count(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_failed_branch_blocks_only_what_it_uses() {
    let (port_a, port_b, net) = (
        key(Kind::Port, "port-a"),
        key(Kind::Port, "port-b"),
        key(Kind::Network, "net-b"),
    );
    let mut server_a = res(Kind::Server, "server-a", &[]);
    server_a.references = vec![port_a.clone()];
    let mut server_b = res(Kind::Server, "server-b", &[]);
    server_b.references = vec![port_b.clone()];
    let plan = all_selected(vec![
        server_a,
        res(Kind::Port, "port-a", &[]),
        server_b,
        res(Kind::Port, "port-b", &[net.clone()]),
        res(Kind::Network, "net-b", &[]),
    ]);
    let provider = Arc::new(Scripted::default().on_delete("server-a", vec![Err(ErrorClass::Permanent)]));
    let run = execute(provider.clone(), &plan, settings()).await;
    assert!(matches!(
        &run.outcomes["server-a"],
        Outcome::Left(LeftReason::PermanentError { .. })
    ));
    assert_eq!(
        run.outcomes["port-a"],
        Outcome::Left(LeftReason::Blocked {
            by: key(Kind::Server, "server-a")
        })
    );
    assert_eq!(run.outcomes["server-b"], Outcome::Deleted);
    assert_eq!(run.outcomes["port-b"], Outcome::Deleted);
    assert_eq!(run.outcomes["net-b"], Outcome::Deleted);
    assert!(!provider.calls().contains(&"delete port-a".to_string()));
    assert_eq!(run.finished(Kind::Server, "left"), 1);
    assert_eq!(run.finished(Kind::Server, "deleted"), 1);
    assert_eq!(run.finished(Kind::Port, "deleted"), 1);
    // One Finished per actionable node, and the blocked port ends without an attempt.
    assert_eq!(run.finished(Kind::Port, "left"), 1);
    assert!(!run
        .events
        .iter()
        .any(|e| matches!(e, Event::Attempted { key, .. } if key.id == "port-a")));
}

#[tokio::test(start_paused = true)]
async fn an_async_delete_with_an_empty_status_is_polled_until_404() {
    let plan = all_selected(vec![res(Kind::Server, "vm", &[])]);
    let provider = Arc::new(
        Scripted::default()
            .on_observe(
                "vm",
                vec![
                    Ok(Observed::Ready),
                    Ok(Observed::Busy(String::new())),
                    Ok(Observed::Busy(String::new())),
                    Ok(Observed::Busy("deleting".into())),
                    Ok(Observed::Gone),
                ],
            )
            .on_delete("vm", vec![Ok(DeleteOutcome::Accepted)]),
    );
    let run = execute(provider.clone(), &plan, settings()).await;
    assert_eq!(run.outcomes["vm"], Outcome::Deleted);
    assert_eq!(provider.calls().iter().filter(|c| *c == "observe vm").count(), 5);
}

#[tokio::test(start_paused = true)]
async fn an_async_delete_that_never_reports_is_left_at_its_deadline_not_counted_done() {
    let plan = all_selected(vec![res(Kind::Volume, "vol", &[])]);
    let forever: Vec<_> = std::iter::once(Ok(Observed::Ready))
        .chain(std::iter::repeat_n(Ok(Observed::Busy(String::new())), 10_000))
        .collect();
    let provider = Arc::new(
        Scripted::default()
            .on_observe("vol", forever)
            .on_delete("vol", vec![Ok(DeleteOutcome::Accepted)]),
    );
    let started = Instant::now();
    let mut settings = settings();
    settings.delete_timeout = Duration::from_secs(30);
    settings.busy_timeout = Duration::from_secs(20);
    let run = execute(provider, &plan, settings).await;
    assert_eq!(
        run.outcomes["vol"],
        Outcome::Left(LeftReason::Busy {
            state: "empty status".into()
        })
    );
    assert!(
        started.elapsed() < Duration::from_secs(300),
        "bounded: {:?}",
        started.elapsed()
    );
    assert_eq!(run.finished(Kind::Volume, "deleted"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_gone_resource_counts_as_already_gone_and_a_404_on_delete_too() {
    let plan = all_selected(vec![res(Kind::Port, "a", &[]), res(Kind::Port, "b", &[])]);
    let provider = Arc::new(
        Scripted::default()
            .on_observe("a", vec![Ok(Observed::Gone)])
            .on_observe("b", vec![Ok(Observed::Ready), Ok(Observed::Gone)])
            .on_delete("b", vec![Err(ErrorClass::NotFound)]),
    );
    let run = execute(provider.clone(), &plan, settings()).await;
    assert_eq!(run.outcomes["a"], Outcome::AlreadyGone);
    assert_eq!(run.outcomes["b"], Outcome::AlreadyGone);
    assert!(!provider.calls().contains(&"delete a".to_string()));
}

#[tokio::test(start_paused = true)]
async fn concurrency_is_bounded_per_cloud_and_the_delete_cap_holds() {
    let plan = all_selected(
        (0..20)
            .map(|i| res(Kind::Port, &format!("p{i:02}"), &[]))
            .collect(),
    );
    let provider = Arc::new(Scripted::default());
    let mut settings = settings();
    settings.per_cloud = LimitPolicy::Fixed(3);
    settings.max_deletes = 12;
    let run = execute(provider.clone(), &plan, settings).await;
    assert_eq!(provider.max_in_flight.load(Ordering::SeqCst), 3);
    let deleted = run.outcomes.values().filter(|o| **o == Outcome::Deleted).count();
    let capped = run
        .outcomes
        .values()
        .filter(|o| **o == Outcome::Left(LeftReason::DeleteCap))
        .count();
    assert_eq!((deleted, capped), (12, 8));
}

#[tokio::test(start_paused = true)]
async fn nothing_new_starts_after_the_pass_deadline_and_the_rest_is_reported_so() {
    let net = key(Kind::Network, "net");
    let plan = all_selected(vec![
        res(Kind::Port, "port", std::slice::from_ref(&net)),
        res(Kind::Network, "net", &[]),
    ]);
    // The port conflicts until the deadline has passed; the network waits for it and never starts.
    let provider = Arc::new(Scripted::default().on_delete("port", vec![Err(ErrorClass::Conflict); 50]));
    let mut settings = settings();
    settings.deadline = Instant::now() + Duration::from_secs(5);
    let started = Instant::now();
    let run = execute(provider.clone(), &plan, settings).await;
    assert_eq!(run.outcomes["port"], Outcome::Left(LeftReason::PassDeadline));
    assert_eq!(
        run.outcomes["net"],
        Outcome::Left(LeftReason::Blocked {
            by: key(Kind::Port, "port")
        })
    );
    assert!(
        started.elapsed() <= Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(!provider.calls().contains(&"delete net".to_string()));
}

#[tokio::test(start_paused = true)]
async fn a_busy_resource_waits_then_is_deleted_and_a_cancelled_pass_starts_nothing() {
    let plan = all_selected(vec![res(Kind::Server, "locked", &[])]);
    let provider = Arc::new(Scripted::default().on_observe(
        "locked",
        vec![
            Ok(Observed::Busy("locked".into())),
            Ok(Observed::Busy("locked".into())),
            Ok(Observed::Ready),
        ],
    ));
    let run = execute(provider, &plan, settings()).await;
    assert_eq!(run.outcomes["locked"], Outcome::Deleted);

    let provider = Arc::new(Scripted::default());
    let cancel = CancellationToken::new();
    cancel.cancel();
    let run = execute_with(provider.clone(), &plan, settings(), cancel).await;
    assert_eq!(
        run.outcomes.values().next(),
        Some(&Outcome::Left(LeftReason::Shutdown))
    );
    assert!(provider.calls().is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_resource_released_by_its_owner_is_in_use_never_deleted_and_holds_what_it_uses() {
    // A port Nova created for a server goes with it; here Nova unbinds it instead of removing it.
    let (server, port, net) = (
        key(Kind::Server, "vm"),
        key(Kind::Port, "nova-port"),
        key(Kind::Network, "net"),
    );
    let mut owned = res(Kind::Port, "nova-port", std::slice::from_ref(&net));
    owned.removal = crate::model::Removal::WithOwner(server.clone());
    owned.used_by = vec![server.clone()];
    let verdicts = vec![
        Verdict::Selected,
        Verdict::NotMatched("tags_all"),
        Verdict::Selected,
    ];
    let plan = Plan::build(
        vec![
            res(Kind::Server, "vm", &[]),
            owned,
            res(Kind::Network, "net", &[]),
        ],
        verdicts,
    );
    assert_eq!(
        plan.graph[plan.node(&port).unwrap()].disposition,
        Disposition::AwaitRemoval { owner: server }
    );
    // Still there (Ready) after its owner is gone.
    let provider = Arc::new(Scripted::default().on_observe("nova-port", vec![Ok(Observed::Ready)]));
    let run = execute(provider.clone(), &plan, settings()).await;
    assert_eq!(run.outcomes["vm"], Outcome::Deleted);
    assert_eq!(
        run.outcomes["nova-port"],
        Outcome::Left(LeftReason::InUse { by: port.clone() })
    );
    assert_eq!(run.outcomes["net"], Outcome::Left(LeftReason::InUse { by: port }));
    assert_eq!(
        provider.deletes(),
        ["delete vm"],
        "only the server is sent a DELETE"
    );
}

/// Five servers, each on its own port, all ports on one network.
fn servers_on_ports() -> Plan {
    let net = key(Kind::Network, "net");
    let mut resources = vec![res(Kind::Network, "net", &[])];
    for i in 0..5 {
        let port = key(Kind::Port, &format!("port-{i}"));
        resources.push(res(Kind::Server, &format!("vm-{i}"), std::slice::from_ref(&port)));
        resources.push(res(Kind::Port, &format!("port-{i}"), std::slice::from_ref(&net)));
    }
    all_selected(resources)
}

#[tokio::test(start_paused = true)]
async fn batched_reads_are_taken_after_the_blockers_are_gone_and_allow_one_delete_each() {
    let plan = servers_on_ports();
    let provider = Arc::new(Scripted::batched().on_delete(
        "port-2",
        vec![Err(ErrorClass::Conflict), Ok(DeleteOutcome::Completed)],
    ));
    let run = execute(provider.clone(), &plan, settings()).await;
    assert!(
        run.outcomes.values().all(|o| *o == Outcome::Deleted),
        "{:?}",
        run.outcomes
    );
    let done = provider.delete_done.lock().unwrap().clone();
    let done_at =
        |id: &str| -> Vec<Instant> { done.iter().filter(|(d, _)| d == id).map(|(_, at)| *at).collect() };
    let users: HashMap<&str, Vec<String>> = HashMap::from([
        ("net", (0..5).map(|i| format!("port-{i}")).collect()),
        ("port-0", vec!["vm-0".to_string()]),
        ("port-2", vec!["vm-2".to_string()]),
    ]);
    for (id, users) in &users {
        let last_user_gone = users.iter().flat_map(|u| done_at(u)).max().unwrap();
        let reads = provider.rounds_with(id);
        assert!(
            reads.iter().all(|read| *read >= last_user_gone),
            "{id} is read only after its users are gone"
        );
    }
    // Each delete follows its own read: port-2 conflicted once, so it was read twice.
    for i in 0..5 {
        for id in [format!("vm-{i}"), format!("port-{i}")] {
            let deletes = done_at(&id).len();
            assert_eq!(
                provider.rounds_with(&id).len(),
                deletes,
                "{id}: one read per delete"
            );
        }
    }
    let rounds = provider.rounds.lock().unwrap().len();
    assert!(rounds < 12, "12 reads before deletes share {rounds} rounds");
    assert!(
        !provider.calls().iter().any(|c| c.starts_with("observe ")),
        "every read was batched"
    );
}

#[tokio::test(start_paused = true)]
async fn a_read_asked_while_a_round_runs_waits_for_the_next_round() {
    // vm-0's delete takes 100 ms, as does a round: port-0 becomes ready while the round that read
    // the servers may still run, and must be read by a round of its own that starts later.
    let plan = servers_on_ports();
    let provider = Arc::new(Scripted::batched());
    execute(provider.clone(), &plan, settings()).await;
    let rounds = provider.rounds.lock().unwrap().clone();
    let first_with_port = rounds
        .iter()
        .position(|(_, ids)| ids.iter().any(|i| i.starts_with("port")))
        .unwrap();
    assert!(first_with_port > 0);
    assert!(rounds[0].1.iter().all(|id| id.starts_with("vm-")), "{rounds:?}");
    // The point: a port became ready (its server's delete ended) while rounds ran, and no round
    // that had started before that answered it.
    let done = provider.delete_done.lock().unwrap().clone();
    for i in 0..5 {
        let server_gone = done
            .iter()
            .filter(|(id, _)| *id == format!("vm-{i}"))
            .map(|(_, at)| *at)
            .max()
            .unwrap();
        let port = format!("port-{i}");
        let reads = provider.rounds_with(&port);
        assert!(!reads.is_empty(), "{port} was read");
        assert!(
            reads.iter().all(|started| *started >= server_gone),
            "{port} was read by a round that started before its server was gone: {rounds:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn in_a_batch_an_empty_status_is_busy_and_an_unanswered_read_deletes_nothing() {
    let plan = all_selected(vec![res(Kind::Server, "vm", &[]), res(Kind::Volume, "vol", &[])]);
    let provider = Arc::new(Scripted {
        unanswered: Some("vol".to_string()),
        ..Scripted::batched().on_observe(
            "vm",
            vec![
                Ok(Observed::Busy(String::new())),
                Ok(Observed::Busy(String::new())),
                Ok(Observed::Ready),
            ],
        )
    });
    let run = execute(provider.clone(), &plan, settings()).await;
    assert_eq!(run.outcomes["vm"], Outcome::Deleted);
    assert_eq!(provider.rounds_with("vm").len(), 3, "busy twice, then ready");
    assert!(
        matches!(run.outcomes["vol"], Outcome::Left(_)),
        "{:?}",
        run.outcomes["vol"]
    );
    let deletes: Vec<_> = provider
        .calls()
        .into_iter()
        .filter(|c| c.starts_with("delete"))
        .collect();
    assert_eq!(deletes, ["delete vm"]);
}

#[tokio::test(start_paused = true)]
async fn with_batched_reads_a_resource_released_by_its_owner_is_still_never_deleted() {
    let (server, net) = (key(Kind::Server, "vm"), key(Kind::Network, "net"));
    let mut owned = res(Kind::Port, "nova-port", std::slice::from_ref(&net));
    owned.removal = crate::model::Removal::WithOwner(server.clone());
    owned.used_by = vec![server.clone()];
    let plan = Plan::build(
        vec![
            res(Kind::Server, "vm", &[]),
            owned,
            res(Kind::Network, "net", &[]),
        ],
        vec![
            Verdict::Selected,
            Verdict::NotMatched("tags_all"),
            Verdict::Selected,
        ],
    );
    let provider = Arc::new(Scripted::batched().on_observe("nova-port", vec![Ok(Observed::Ready)]));
    let run = execute(provider.clone(), &plan, settings()).await;
    let port = key(Kind::Port, "nova-port");
    assert_eq!(
        run.outcomes["nova-port"],
        Outcome::Left(LeftReason::InUse { by: port })
    );
    assert_eq!(
        provider.deletes(),
        ["delete vm"],
        "only the server is sent a DELETE"
    );
}

#[tokio::test(start_paused = true)]
async fn an_adaptive_limit_halves_on_429_and_grows_back_between_its_bounds() {
    let plan = all_selected(
        (0..60)
            .map(|i| res(Kind::Port, &format!("p{i:02}"), &[]))
            .collect(),
    );
    let provider = Arc::new(Scripted::default().on_delete(
        "p05",
        vec![
            Err(ErrorClass::RateLimited { retry_after: None }),
            Ok(DeleteOutcome::Completed),
        ],
    ));
    let mut settings = settings();
    settings.global_concurrency = 64;
    settings.per_cloud = LimitPolicy::Adaptive {
        initial: 4,
        min: 2,
        max: 6,
    };
    let run = execute(provider.clone(), &plan, settings).await;
    assert!(run.outcomes.values().all(|o| *o == Outcome::Deleted));
    let limits: Vec<usize> = run
        .events
        .iter()
        .filter_map(|e| match e {
            Event::ConcurrencyChanged { limit, .. } => Some(*limit),
            _ => None,
        })
        .collect();
    assert_eq!(limits.first(), Some(&4), "the starting limit is published");
    let halved = limits.windows(2).position(|w| w[1] < w[0]).expect("a decrease");
    assert_eq!(limits[halved + 1], (limits[halved] / 2).max(2));
    assert!(limits.iter().all(|l| (2..=6).contains(l)), "{limits:?}");
    assert_eq!(
        limits.last(),
        Some(&6),
        "healthy calls grow it back to its bound: {limits:?}"
    );
    assert!(provider.max_in_flight.load(Ordering::SeqCst) <= 6);
}
