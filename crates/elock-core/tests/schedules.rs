//! Randomized-schedule concurrency test: many clients acquire, wait (attached and detached),
//! give up mid-wait, release, renew and cancel, while a chaos task moves the clock (expiry, queue
//! timeouts, aging), force-releases and runs the deadlock detector.
//!
//! Each seed fixes a schedule: on a current-thread runtime every task yields a seeded random
//! number of times between steps, so the interleaving is a function of the seed (a failure prints
//! it; rerun with `ELOCK_SEED=n`). A multi-thread run adds real parallelism. An independent checker
//! replays the committed event stream and proves: no resource is ever granted to two leases at
//! once, fencing tokens strictly increase, every ticket ends exactly once (no waiter is lost), and
//! every attached caller returns.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use elock_core::clock::ManualClock;
use elock_core::config::EngineConfig;
use elock_core::event::{Event, EventType};
use elock_core::manager::{LockRequest, Manager, Ttl};
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::{DurableStore, InMemoryStore, Store};
use elock_core::table::{Acquired, LeaseFilter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RESOURCES: [&str; 5] = ["r0", "r1", "r2", "r3", "r4"];
const CLIENTS: usize = 8;
const STEPS: usize = 40;

async fn jitter(rng: &mut StdRng) {
    for _ in 0..rng.random_range(0..4) {
        tokio::task::yield_now().await;
    }
}

fn random_resources(rng: &mut StdRng) -> Vec<ResourceName> {
    let n = if rng.random_bool(0.3) { 2 } else { 1 };
    let mut out: Vec<ResourceName> = Vec::new();
    while out.len() < n {
        let r = ResourceName::new(RESOURCES[rng.random_range(0..RESOURCES.len())]).unwrap();
        if !out.contains(&r) {
            out.push(r);
        }
    }
    out
}

async fn client(m: Manager, id: usize, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ (id as u64) << 32);
    let owner = Owner::new(&format!("client-{id}")).unwrap();
    let mut leases: Vec<LeaseId> = Vec::new();
    let mut tickets: Vec<TicketId> = Vec::new();
    for _ in 0..STEPS {
        jitter(&mut rng).await;
        let mut req = LockRequest::new(owner.clone(), random_resources(&mut rng));
        req.priority = Some(Priority::from_level_saturating(rng.random_range(0..4)));
        req.ttl = Ttl::After(Duration::from_secs(rng.random_range(1..30)));
        match rng.random_range(0..10) {
            0..=2 => {
                if let Ok(a) = m.acquire(req).await {
                    leases.extend(a.lease().map(|l| l.id));
                }
            }
            3..=5 => {
                req.wait = Some(Duration::from_secs(rng.random_range(1..20)));
                let give_up_after = rng.random_bool(0.25).then(|| rng.random_range(0..6));
                let acquire = m.acquire(req);
                tokio::pin!(acquire);
                let result = match give_up_after {
                    // The caller goes away mid-wait: the future is dropped.
                    Some(n) => {
                        let mut out = None;
                        for _ in 0..n {
                            tokio::select! {
                                biased;
                                r = &mut acquire => { out = Some(r); break; }
                                _ = tokio::task::yield_now() => {}
                            }
                        }
                        out
                    }
                    None => Some(acquire.await),
                };
                if let Some(Ok(a)) = result {
                    leases.extend(a.lease().map(|l| l.id));
                }
            }
            6 => {
                req.wait = Some(Duration::from_secs(1));
                req.detach = true;
                match m.acquire(req).await {
                    Ok(Acquired::Queued { ticket }) => {
                        tickets.push(ticket.id);
                        leases.push(ticket.lease_id.unwrap());
                    }
                    Ok(Acquired::Granted { lease, .. }) => leases.push(lease.id),
                    Err(_) => {}
                }
            }
            7 | 8 if !leases.is_empty() => {
                let l = leases.swap_remove(rng.random_range(0..leases.len()));
                let _ = m.release(l).await;
            }
            9 if !leases.is_empty() => {
                let _ = m
                    .renew(leases[rng.random_range(0..leases.len())], None)
                    .await;
            }
            _ if !tickets.is_empty() => {
                let t = tickets.swap_remove(rng.random_range(0..tickets.len()));
                let _ = m.cancel_ticket(t).await;
            }
            _ => {}
        }
    }
    for l in leases {
        let _ = m.release(l).await;
    }
}

async fn chaos(
    m: Manager,
    clock: Arc<ManualClock>,
    seed: u64,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(7919));
    while !*stop.borrow_and_update() {
        jitter(&mut rng).await;
        clock.advance(Duration::from_millis(rng.random_range(0..1500)));
        match rng.random_range(0..20) {
            0 => {
                let _ = m.detect_deadlocks().await;
            }
            1 => {
                let r = ResourceName::new(RESOURCES[rng.random_range(0..RESOURCES.len())]).unwrap();
                let _ = m.force_release(r, "chaos".into()).await;
            }
            _ => {}
        }
        tokio::task::yield_now().await;
    }
}

/// Replays committed events and checks the invariants as it goes.
#[derive(Default)]
struct Checker {
    holders: HashMap<ResourceName, LeaseId>,
    tokens: HashMap<ResourceName, u64>,
    open_tickets: HashSet<TicketId>,
    last_id: u64,
    grants: usize,
}

impl Checker {
    fn apply(&mut self, e: &Event) {
        assert!(e.id > self.last_id, "event ids must increase");
        self.last_id = e.id;
        let lease = e.lease_id;
        match e.kind {
            k if k.grants() => {
                self.grants += 1;
                for r in &e.resources {
                    if let Some(other) = self.holders.insert(r.clone(), lease.unwrap()) {
                        panic!(
                            "{r} granted to {:?} while {other:?} holds it (event {})",
                            lease, e.id
                        );
                    }
                    let token = e
                        .fencing_token
                        .or_else(|| e.fencing_tokens.as_ref().map(|t| t[r]))
                        .unwrap();
                    let prev = self.tokens.insert(r.clone(), token).unwrap_or(0);
                    assert!(token > prev, "{r}: token {token} after {prev}");
                }
                if e.kind == EventType::QueueGranted {
                    assert!(
                        self.open_tickets.remove(&e.ticket_id.unwrap()),
                        "granted an unknown ticket"
                    );
                }
            }
            k if k.frees_resources() => {
                for r in &e.resources {
                    assert_eq!(
                        self.holders.remove(r),
                        lease,
                        "{r} freed by a lease that did not hold it"
                    );
                }
            }
            EventType::QueueEnqueued => assert!(self.open_tickets.insert(e.ticket_id.unwrap())),
            EventType::QueueTimeout | EventType::QueueCancelled => {
                assert!(
                    self.open_tickets.remove(&e.ticket_id.unwrap()),
                    "a ticket ended twice"
                );
            }
            _ => {}
        }
    }
}

async fn run_seed(seed: u64, store: Arc<dyn Store>, clock: Arc<ManualClock>, prevention: bool) {
    let mut config = EngineConfig::default();
    config.events.buffer_size = 1 << 16;
    config.deadlock_detection.prevention = prevention;
    config.deadlock_detection.check_interval = Duration::from_secs(3);
    config.priority_queue.queue_timeout = Duration::from_secs(40);
    config.priority_queue.starvation_threshold = Duration::from_secs(5);
    config.priority_queue.max_queue_size = 6;
    let m = Manager::start(store, config, clock.clone()).await.unwrap();
    let mut events = m.subscribe();
    let checker = tokio::spawn(async move {
        let mut c = Checker::default();
        while let Some(e) = events.recv().await {
            c.apply(&e);
        }
        c
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let chaos = tokio::spawn(chaos(m.clone(), clock.clone(), seed, stop_rx));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| tokio::spawn(client(m.clone(), i, seed)))
        .collect();
    for c in clients {
        tokio::time::timeout(Duration::from_secs(60), c)
            .await
            .unwrap_or_else(|_| panic!("seed {seed}: a client never returned (a lost waiter)"))
            .unwrap_or_else(|e| panic!("seed {seed}: client panicked: {e}"));
    }
    stop_tx.send(true).unwrap();
    chaos.await.unwrap();
    // Let every lease expire and every detached ticket time out.
    for _ in 0..100 {
        clock.advance(Duration::from_secs(60));
        tokio::task::yield_now().await;
        if m.list(LeaseFilter::default()).await.unwrap().is_empty()
            && m.queues().await.unwrap().is_empty()
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        m.list(LeaseFilter::default()).await.unwrap().is_empty(),
        "seed {seed}: leases left"
    );
    assert!(
        m.queues().await.unwrap().is_empty(),
        "seed {seed}: tickets left"
    );
    assert_eq!(m.bus().lost(), 0, "the checker must see every event");
    m.shutdown().await.unwrap();
    drop(m);
    let c = checker.await.unwrap();
    assert!(
        c.holders.is_empty(),
        "seed {seed}: the replay still shows holders: {:?}",
        c.holders
    );
    assert!(
        c.open_tickets.is_empty(),
        "seed {seed}: tickets never ended: {:?}",
        c.open_tickets
    );
    assert!(c.grants > 0, "seed {seed}: the schedule granted nothing");
}

fn seeds(default: std::ops::Range<u64>) -> Vec<u64> {
    match std::env::var("ELOCK_SEED") {
        Ok(s) => vec![s.parse().expect("ELOCK_SEED is a number")],
        Err(_) => default.collect(),
    }
}

/// Runs each seed on a fresh runtime (current-thread: deterministic; else two workers) and store.
fn run_seeds(seeds: Vec<u64>, deterministic: bool, durable: bool) {
    for seed in seeds {
        let rt = if deterministic {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
        } else {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap()
        };
        rt.block_on(async {
            let clock = ManualClock::at_epoch_2026();
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = if durable {
                Arc::new(DurableStore::open(dir.path(), Default::default(), clock.clone()).unwrap())
            } else {
                Arc::new(InMemoryStore::new(Default::default(), clock.clone()))
            };
            run_seed(seed, store, clock, seed % 2 == 0).await;
        });
    }
}

#[test]
fn deterministic_schedules_on_the_memory_store() {
    run_seeds(seeds(0..150), true, false);
}

#[test]
fn parallel_schedules_on_the_memory_store() {
    run_seeds(seeds(1000..1030), false, false);
}

#[test]
fn parallel_schedules_on_the_durable_store() {
    run_seeds(seeds(2000..2012), false, true);
}
