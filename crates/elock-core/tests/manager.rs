//! The manager's policies over a real store: blocking waits and every way they end, the expiry
//! timer, the deadlock detector, the feature switches, the circuit breaker and retry against a
//! failing backend, statistics and events.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use elock_core::clock::{Clock, ManualClock, SystemClock};
use elock_core::config::EngineConfig;
use elock_core::error::{Error, Result};
use elock_core::event::EventType;
use elock_core::manager::{BreakerState, LockRequest, Manager, Ttl};
use elock_core::model::{
    Cycle, Lease, LeaseId, Owner, Priority, ResourceName, TicketId, TicketView, Timestamp,
};
use elock_core::store::{EventSink, InMemoryStore, Store};
use elock_core::table::{
    Acquired, LeaseFilter, Op, Outcome, QueueSummary, ResourceInfo, TableConfig,
};

const SEC: Duration = Duration::from_secs(1);

fn req(owner: &str, resources: &[&str]) -> LockRequest {
    LockRequest::new(
        Owner::new(owner).unwrap(),
        resources
            .iter()
            .map(|r| ResourceName::new(r).unwrap())
            .collect(),
    )
}

fn waiting(owner: &str, resources: &[&str], wait: Duration) -> LockRequest {
    LockRequest {
        wait: Some(wait),
        ..req(owner, resources)
    }
}

async fn manager_with(config: EngineConfig, clock: Arc<dyn Clock>) -> Manager {
    let store = Arc::new(InMemoryStore::new(config.table_config(), clock.clone()));
    Manager::start(store, config, clock).await.unwrap()
}

async fn manual(config: EngineConfig) -> (Manager, Arc<ManualClock>) {
    let clock = ManualClock::at_epoch_2026();
    (manager_with(config, clock.clone()).await, clock)
}

fn lease(a: Acquired) -> Lease {
    match a {
        Acquired::Granted { lease, .. } => lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

/// Lets spawned tasks run until `cond` holds (bounded).
async fn eventually(mut cond: impl AsyncFnMut() -> bool) {
    for _ in 0..500 {
        if cond().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in time");
}

async fn queue_depth(m: &Manager, r: &str) -> usize {
    m.resource(ResourceName::new(r).unwrap())
        .await
        .unwrap()
        .queue
        .len()
}

#[tokio::test]
async fn an_attached_wait_ends_with_the_grant_when_the_holder_releases() {
    let (m, _) = manual(EngineConfig::default()).await;
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    m.release(a.id).await.unwrap();
    let b = lease(waiter.await.unwrap().unwrap());
    assert_eq!((b.owner.as_str(), b.fencing_token("r")), ("bob", Some(2)));
}

#[tokio::test]
async fn an_attached_wait_times_out_at_its_deadline_and_leaves_no_ticket() {
    let (m, clock) = manual(EngineConfig::default()).await;
    lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 5 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    clock.advance(5 * SEC);
    match waiter.await.unwrap() {
        Err(Error::WaitTimeout { waited, .. }) => assert_eq!(waited, 5 * SEC),
        other => panic!("expected wait_timeout, got {other:?}"),
    }
    assert_eq!(queue_depth(&m, "r").await, 0);
}

#[tokio::test]
async fn a_caller_that_goes_away_leaves_no_ticket_behind() {
    let (m, _) = manual(EngineConfig::default()).await;
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    waiter.abort();
    eventually(async || queue_depth(&m, "r").await == 0).await;
    m.release(a.id).await.unwrap();
    assert!(
        m.list(LeaseFilter::default()).await.unwrap().is_empty(),
        "nothing was granted to the gone caller"
    );
}

#[tokio::test]
async fn a_detached_ticket_is_granted_by_handoff_with_nobody_connected() {
    let (m, _) = manual(EngineConfig::default()).await;
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let ticket = match m
        .acquire(LockRequest {
            detach: true,
            ..waiting("acme/infra#7", &["r"], SEC)
        })
        .await
        .unwrap()
    {
        Acquired::Queued { ticket } => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    };
    assert!(ticket.detached);
    // The wait asked for is how long the ticket stays in line; without one, queue-timeout.
    assert_eq!(ticket.deadline, Some(ticket.enqueued_at.plus(SEC)));
    let Acquired::Queued { ticket: other } = m
        .acquire(LockRequest {
            detach: true,
            ..req("acme/infra#8", &["r"])
        })
        .await
        .unwrap()
    else {
        panic!("expected a ticket")
    };
    let queue_timeout = EngineConfig::default().priority_queue.queue_timeout;
    assert_eq!(other.deadline, Some(other.enqueued_at.plus(queue_timeout)));
    m.cancel_ticket(other.id).await.unwrap();
    m.release(a.id).await.unwrap();
    let granted = m.get_lease(ticket.lease_id.unwrap()).await.unwrap();
    assert_eq!(granted.owner.as_str(), "acme/infra#7");
    assert!(matches!(
        m.get_ticket(ticket.id).await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test]
async fn the_expiry_timer_hands_off_at_the_deadline_without_any_request() {
    let (m, clock) = manual(EngineConfig::default()).await;
    lease(
        m.acquire(LockRequest {
            ttl: Ttl::After(10 * SEC),
            ..req("alice", &["r"])
        })
        .await
        .unwrap(),
    );
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    clock.advance(10 * SEC);
    let b = lease(
        tokio::time::timeout(5 * SEC, waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    );
    assert_eq!(b.owner.as_str(), "bob");
}

#[tokio::test]
async fn on_the_system_clock_expiry_hands_off_within_100ms_of_the_deadline() {
    let m = manager_with(EngineConfig::default(), Arc::new(SystemClock)).await;
    let a = lease(
        m.acquire(LockRequest {
            ttl: Ttl::After(Duration::from_millis(300)),
            ..req("alice", &["r"])
        })
        .await
        .unwrap(),
    );
    let mut events = m.subscribe();
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 10 * SEC)).await });
    let b = lease(waiter.await.unwrap().unwrap());
    let late = b.acquired_at.as_millis() as i64 - a.expires_at.unwrap().as_millis() as i64;
    assert!(
        (0..100).contains(&late),
        "handed off {late} ms after the deadline"
    );
    let expired = events
        .recv_filtered(&[EventType::LockExpired])
        .await
        .unwrap();
    assert_eq!(expired.lease_id, Some(a.id));
}

#[tokio::test]
async fn the_detector_cancels_a_victim_whose_wait_ends_with_deadlock() {
    let mut config = EngineConfig::default();
    config.deadlock_detection.prevention = false;
    config.deadlock_detection.check_interval = 5 * SEC;
    let (m, clock) = manual(config).await;
    lease(m.acquire(req("alice", &["r1"])).await.unwrap());
    lease(m.acquire(req("bob", &["r2"])).await.unwrap());
    let (m1, m2) = (m.clone(), m.clone());
    let a = tokio::spawn(async move {
        m1.acquire(LockRequest {
            priority: Some(Priority::High),
            ..waiting("alice", &["r2"], 60 * SEC)
        })
        .await
    });
    eventually(async || queue_depth(&m, "r2").await == 1).await;
    let b = tokio::spawn(async move { m2.acquire(waiting("bob", &["r1"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r1").await == 1).await;
    assert_eq!(m.deadlocks().await.unwrap().active.len(), 1);
    clock.advance(5 * SEC);
    match tokio::time::timeout(5 * SEC, b).await.unwrap().unwrap() {
        Err(Error::Deadlock { cycle }) => assert_eq!(cycle.len(), 2),
        other => panic!("bob (lowest priority) should be the victim, got {other:?}"),
    }
    let report = m.deadlocks().await.unwrap();
    assert!(report.active.is_empty());
    assert_eq!(report.history.len(), 1);
    assert_eq!(report.history[0].victim.as_ref().unwrap().as_str(), "bob");
    assert!(!a.is_finished(), "alice still waits for bob's r2");
    assert_eq!(m.stats().await.stats.deadlocks_last_hour, 1);
}

#[tokio::test]
async fn prevention_refuses_records_and_announces_the_cycle() {
    let (m, _) = manual(EngineConfig::default()).await;
    let mut events = m.subscribe();
    lease(m.acquire(req("alice", &["r1"])).await.unwrap());
    lease(m.acquire(req("bob", &["r2"])).await.unwrap());
    let m1 = m.clone();
    let _a = tokio::spawn(async move { m1.acquire(waiting("alice", &["r2"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r2").await == 1).await;
    let err = m
        .acquire(waiting("bob", &["r1"], 60 * SEC))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Deadlock { .. }), "{err:?}");
    let history = m.deadlocks().await.unwrap().history;
    assert_eq!(history.len(), 1);
    assert_eq!(
        history[0].resolution,
        elock_core::table::Resolution::Prevented
    );
    let e = events
        .recv_filtered(&[EventType::DeadlockDetected])
        .await
        .unwrap();
    assert_eq!(e.reason.as_deref(), Some("prevented"));
    assert_eq!(e.cycle.as_ref().unwrap().len(), 2);
}

#[tokio::test]
async fn with_the_queue_off_a_wait_retries_with_backoff_or_is_refused() {
    let mut config = EngineConfig::default();
    config.priority_queue.enabled = false;
    let m = manager_with(config.clone(), Arc::new(SystemClock)).await;
    lease(m.acquire(req("alice", &["r"])).await.unwrap());
    assert!(matches!(
        m.acquire(waiting("bob", &["r"], 10 * SEC)).await,
        Err(Error::Locked { .. })
    ));

    config.retry = elock_core::config::RetryConfig {
        enabled: true,
        max_attempts: 50,
        base_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(40),
    };
    let m = manager_with(config, Arc::new(SystemClock)).await;
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 10 * SEC)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        queue_depth(&m, "r").await,
        0,
        "nothing is queued when the queue is off"
    );
    m.release(a.id).await.unwrap();
    assert_eq!(lease(waiter.await.unwrap().unwrap()).owner.as_str(), "bob");
    assert!(m.stats().await.stats.retries >= 1);
    let short = m
        .acquire(waiting("carol", &["r"], Duration::from_millis(100)))
        .await;
    assert!(matches!(short, Err(Error::WaitTimeout { .. })), "{short:?}");
}

#[tokio::test]
async fn with_enhanced_locking_off_only_atlantis_behaviour_remains() {
    let config = EngineConfig {
        enabled: false,
        ..EngineConfig::default()
    };
    let (m, _) = manual(config).await;
    let a = lease(
        m.acquire(LockRequest {
            priority: Some(Priority::Critical),
            ttl: Ttl::After(SEC),
            ..req("acme/infra#1", &["p"])
        })
        .await
        .unwrap(),
    );
    assert_eq!((a.expires_at, a.priority), (None, Priority::Normal));
    assert!(matches!(
        m.acquire(waiting("acme/infra#2", &["p"], 60 * SEC)).await,
        Err(Error::Locked { .. })
    ));
    assert!(m.queues().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_wait_longer_than_max_timeout_is_refused_naming_wait() {
    let (m, _) = manual(EngineConfig::default()).await;
    let e = m
        .acquire(waiting("a", &["r"], 3 * 3600 * SEC))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("wait"));
}

#[tokio::test]
async fn statistics_follow_what_happened() {
    let (m, clock) = manual(EngineConfig::default()).await;
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    assert!(m.acquire(req("bob", &["r"])).await.is_err());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("carol", &["r"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    assert_eq!(m.stats().await.stats.queue_depth, 1);
    clock.advance(4 * SEC);
    m.release(a.id).await.unwrap();
    let c = lease(waiter.await.unwrap().unwrap());
    let s = m.stats().await;
    assert_eq!(s.stats.active_locks, 1);
    assert_eq!(s.stats.queue_depth, 0);
    assert_eq!(s.stats.successful_acquires, 2);
    assert_eq!(s.stats.failed_acquires, 1);
    assert_eq!(s.stats.average_wait, 4 * SEC);
    assert_eq!(s.stats.average_hold, 4 * SEC);
    assert_eq!(s.health_score, 100);
    assert_eq!(
        (s.backend.as_str(), s.breaker),
        ("memory", BreakerState::Closed)
    );
    m.release(c.id).await.unwrap();
    assert_eq!(m.stats().await.stats.active_locks, 0);
}

#[tokio::test]
async fn subscribers_see_every_event_in_commit_order_with_increasing_ids() {
    let (m, _) = manual(EngineConfig::default()).await;
    let mut sub = m.subscribe();
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let t = m
        .acquire(LockRequest {
            detach: true,
            ..waiting("bob", &["r"], SEC)
        })
        .await
        .unwrap();
    m.renew(a.id, None).await.unwrap();
    m.release(a.id).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..5 {
        got.push(sub.recv().await.unwrap());
    }
    let kinds: Vec<_> = got.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [
            EventType::LockAcquired,
            EventType::QueueEnqueued,
            EventType::LockRenewed,
            EventType::LockReleased,
            EventType::QueueGranted
        ]
    );
    assert!(got.windows(2).all(|w| w[0].id < w[1].id));
    assert!(got.iter().all(|e| e.instance.as_deref() == Some("elock")));
    assert!(matches!(t, Acquired::Queued { .. }));
}

#[tokio::test]
async fn reload_changes_live_limits() {
    let (m, _) = manual(EngineConfig::default()).await;
    let mut config = m.config();
    config.priority_queue.max_queue_size = 1;
    assert!(m.reload(config).await.unwrap().is_empty());
    lease(m.acquire(req("a", &["r"])).await.unwrap());
    m.acquire(LockRequest {
        detach: true,
        ..waiting("b", &["r"], SEC)
    })
    .await
    .unwrap();
    let e = m
        .acquire(LockRequest {
            detach: true,
            ..waiting("c", &["r"], SEC)
        })
        .await
        .unwrap_err();
    assert!(matches!(e, Error::QueueFull { max: 1, .. }), "{e:?}");
    let mut config = m.config();
    config.instance = "other".into();
    assert_eq!(m.reload(config).await.unwrap(), vec!["instance"]);
}

/// A store whose backend can be made to fail: `fail_next` calls, or all while `down`.
struct FlakyStore {
    inner: InMemoryStore,
    fail_next: AtomicU32,
    down: AtomicBool,
    /// Applies the next operations but loses their answers (a timeout after the commit).
    lose_answers: AtomicU32,
    /// How a handoff's delivery is confirmed: 0 yes, 1 refused (the lease was taken back),
    /// 2 the store fails.
    delivery: AtomicU32,
}

impl FlakyStore {
    fn check(&self) -> Result<()> {
        if self.down.load(Ordering::SeqCst)
            || self
                .fail_next
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(Error::Storage("connection refused".into()));
        }
        Ok(())
    }
}

#[async_trait]
impl Store for FlakyStore {
    fn kind(&self) -> &'static str {
        "flaky"
    }
    fn attach_sink(&self, sink: Arc<dyn EventSink>) -> Result<()> {
        self.inner.attach_sink(sink)
    }
    async fn apply(&self, op: Op) -> Result<Outcome> {
        self.check()?;
        let outcome = self.inner.apply(op).await;
        if self
            .lose_answers
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return Err(Error::Storage("response timed out".into()));
        }
        outcome
    }
    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        self.check()?;
        self.inner.get_lease(id).await
    }
    async fn delivered(&self, _: &Lease) -> Result<bool> {
        match self.delivery.load(Ordering::SeqCst) {
            0 => Ok(true),
            1 => Ok(false),
            _ => Err(Error::Storage("response timed out".into())),
        }
    }
    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        self.inner.get_ticket(id).await
    }
    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        self.inner.list(filter).await
    }
    async fn resource(&self, r: ResourceName) -> Result<ResourceInfo> {
        self.inner.resource(r).await
    }
    async fn queues(&self) -> Result<Vec<QueueSummary>> {
        self.inner.queues().await
    }
    async fn find_deadlocks(&self) -> Result<Vec<Cycle>> {
        self.inner.find_deadlocks().await
    }
    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        self.inner.next_deadline().await
    }
    async fn now(&self) -> Result<Timestamp> {
        self.inner.now().await
    }
    async fn ping(&self) -> Result<Duration> {
        self.check()?;
        Ok(Duration::ZERO)
    }
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
    async fn set_table_config(&self, config: TableConfig) -> Result<()> {
        self.inner.set_table_config(config).await
    }
    async fn snapshot(&self) -> Result<elock_core::table::Snapshot> {
        self.inner.snapshot().await
    }
}

async fn flaky(config: EngineConfig) -> (Manager, Arc<FlakyStore>, Arc<ManualClock>) {
    let clock = ManualClock::at_epoch_2026();
    let store = Arc::new(FlakyStore {
        inner: InMemoryStore::new(config.table_config(), clock.clone()),
        fail_next: AtomicU32::new(0),
        down: AtomicBool::new(false),
        lose_answers: AtomicU32::new(0),
        delivery: AtomicU32::new(0),
    });
    let m = Manager::start(store.clone(), config, clock.clone())
        .await
        .unwrap();
    (m, store, clock)
}

#[tokio::test]
async fn the_breaker_opens_fails_fast_half_opens_and_closes() {
    let mut config = EngineConfig::default();
    config.circuit_breaker.failure_threshold = 3;
    config.circuit_breaker.success_threshold = 2;
    config.circuit_breaker.timeout = 30 * SEC;
    let (m, store, clock) = flaky(config).await;
    let mut events = m.subscribe();
    store.down.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert!(matches!(
            m.acquire(req("a", &["r"])).await,
            Err(Error::Storage(_))
        ));
    }
    assert_eq!(
        events
            .recv_filtered(&[EventType::BreakerOpened])
            .await
            .unwrap()
            .kind,
        EventType::BreakerOpened
    );
    store.down.store(false, Ordering::SeqCst);
    match m.acquire(req("a", &["r"])).await {
        Err(e @ Error::BackendUnavailable { .. }) => assert_eq!(e.code().http_status(), 503),
        other => panic!("expected a fast failure, got {other:?}"),
    }
    assert_eq!(m.stats().await.breaker, BreakerState::Open);
    assert!(m.stats().await.health_score <= 50);
    clock.advance(30 * SEC);
    assert_eq!(m.stats().await.breaker, BreakerState::HalfOpen);
    let l = lease(m.acquire(req("a", &["r"])).await.unwrap());
    m.release(l.id).await.unwrap();
    assert_eq!(m.stats().await.breaker, BreakerState::Closed);
    assert_eq!(
        events
            .recv_filtered(&[EventType::BreakerClosed])
            .await
            .unwrap()
            .kind,
        EventType::BreakerClosed
    );
}

#[tokio::test]
async fn backend_failures_are_retried_with_backoff_when_retry_is_on() {
    let mut config = EngineConfig::default();
    config.retry = elock_core::config::RetryConfig {
        enabled: true,
        max_attempts: 3,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
    };
    let (m, store, _) = flaky(config).await;
    store.fail_next.store(2, Ordering::SeqCst);
    let started = Instant::now();
    let l = lease(m.acquire(req("a", &["r"])).await.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(5));
    assert_eq!(m.stats().await.stats.retries, 2);
    store.fail_next.store(3, Ordering::SeqCst);
    assert!(
        matches!(m.release(l.id).await, Err(Error::Storage(_))),
        "three failures exhaust three attempts"
    );
}

#[tokio::test]
async fn health_reports_the_backend_and_the_score() {
    let (m, store, _) = flaky(EngineConfig::default()).await;
    let h = m.health().await;
    assert_eq!(
        (h.health_score, h.backend.kind.as_str(), h.backend.healthy),
        (100, "flaky", true)
    );
    assert_eq!(h.status, elock_core::manager::HealthStatus::Healthy);
    let mut events = m.subscribe();
    store.down.store(true, Ordering::SeqCst);
    let h = m.health().await;
    assert!(!h.backend.healthy);
    assert_eq!(h.health_score, 70);
    assert_eq!(
        events.recv().await.unwrap().kind,
        EventType::BackendUnhealthy
    );
    store.down.store(false, Ordering::SeqCst);
    m.health().await;
    assert_eq!(
        events.recv().await.unwrap().kind,
        EventType::BackendRecovered
    );
}

#[tokio::test]
async fn a_durable_manager_restarts_with_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let open = || {
        elock_core::store::DurableStore::open(
            dir.path(),
            EngineConfig::default().table_config(),
            clock.clone(),
        )
        .unwrap()
    };
    let held = {
        let m = Manager::start(Arc::new(open()), EngineConfig::default(), clock.clone())
            .await
            .unwrap();
        let l = lease(m.acquire(req("alice", &["r"])).await.unwrap());
        m.acquire(LockRequest {
            detach: true,
            ..waiting("bob", &["r"], SEC)
        })
        .await
        .unwrap();
        m.shutdown().await.unwrap();
        l
    };
    let m = Manager::start(Arc::new(open()), EngineConfig::default(), clock.clone())
        .await
        .unwrap();
    let s = m.stats().await.stats;
    assert_eq!((s.active_locks, s.queue_depth), (1, 1));
    assert_eq!(
        m.get_lease(held.id).await.unwrap().fencing_token("r"),
        Some(1)
    );
}

#[tokio::test]
async fn an_earlier_deadline_wakes_a_timer_already_sleeping_on_a_later_one() {
    let (m, clock) = manual(EngineConfig::default()).await;
    lease(
        m.acquire(LockRequest {
            ttl: Ttl::After(600 * SEC),
            ..req("a", &["late"])
        })
        .await
        .unwrap(),
    );
    // Let the timer go to sleep on the 600s deadline.
    tokio::time::sleep(Duration::from_millis(20)).await;
    lease(
        m.acquire(LockRequest {
            ttl: Ttl::After(5 * SEC),
            ..req("b", &["soon"])
        })
        .await
        .unwrap(),
    );
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("c", &["soon"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "soon").await == 1).await;
    clock.advance(5 * SEC);
    let granted = lease(
        tokio::time::timeout(5 * SEC, waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap(),
    );
    assert_eq!(
        granted.owner.as_str(),
        "c",
        "handed off at 5s without any request"
    );
}

#[tokio::test]
async fn statistics_follow_an_import_through_its_events() {
    let (a, _) = manual(EngineConfig::default()).await;
    lease(a.acquire(req("alice", &["r"])).await.unwrap());
    a.acquire(LockRequest {
        detach: true,
        ..waiting("bob", &["r"], SEC)
    })
    .await
    .unwrap();
    let (b, _) = manual(EngineConfig::default()).await;
    b.import(a.export().await.unwrap()).await.unwrap();
    let s = b.stats().await.stats;
    assert_eq!((s.active_locks, s.queue_depth), (1, 1));
}

#[tokio::test]
async fn with_events_off_nothing_is_published_but_waits_still_end() {
    let mut config = EngineConfig::default();
    config.events.enabled = false;
    let (m, _) = manual(config).await;
    let mut events = m.subscribe();
    let a = lease(m.acquire(req("alice", &["r"])).await.unwrap());
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(waiting("bob", &["r"], 60 * SEC)).await });
    eventually(async || queue_depth(&m, "r").await == 1).await;
    m.release(a.id).await.unwrap();
    assert_eq!(
        lease(waiter.await.unwrap().unwrap()).owner.as_str(),
        "bob",
        "waiters do not need the bus"
    );
    assert_eq!(
        m.stats().await.stats.active_locks,
        1,
        "statistics still follow"
    );
    let nothing = tokio::time::timeout(Duration::from_millis(100), events.recv()).await;
    assert!(
        nothing.is_err(),
        "no event reaches subscribers: {nothing:?}"
    );
}

/// A grant whose answer was lost (the store timed out after committing it) is answered
/// `backend_unavailable`; the caller believes it holds nothing, so the manager gives the lease
/// back, by the ids it chose, once the store answers again. The same for a queued ticket.
#[tokio::test]
async fn an_acquire_answered_backend_unavailable_never_keeps_what_it_took() {
    let (m, store, _) = flaky(EngineConfig::default()).await;
    for (who, wait) in [("try", Duration::ZERO), ("waiter", 30 * SEC)] {
        if wait > Duration::ZERO {
            // Something to queue behind.
            lease(m.acquire(req("holder", &["r"])).await.unwrap());
        }
        store.lose_answers.store(1, Ordering::SeqCst);
        let e = m.acquire(waiting(who, &["r"], wait)).await.unwrap_err();
        assert_eq!(e.code().as_str(), "backend_unavailable", "{e:?}");
        // The store is down for a while after the lost answer; nothing is settled then.
        store.down.store(true, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(300)).await;
        store.down.store(false, Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let info = m.resource(ResourceName::new("r").unwrap()).await.unwrap();
            let mine = info.holder.iter().any(|l| l.owner.as_str() == who)
                || info.queue.iter().any(|t| t.owner.as_str() == who);
            if !mine {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{who}: still holds or waits after the store recovered: {info:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        if let Some(l) = m
            .resource(ResourceName::new("r").unwrap())
            .await
            .unwrap()
            .holder
        {
            m.release(l.id).await.unwrap();
        }
    }
}

/// A handoff to a waiter is confirmed to the store before the waiter is answered. A store that
/// says the lease was taken back (its server was taken for dead) makes the answer
/// `wait_timeout`; a store that cannot say makes it `backend_unavailable`, and the lease is
/// given back once the store answers.
#[tokio::test]
async fn a_handoff_is_answered_only_once_its_delivery_is_confirmed() {
    let (m, store, _) = flaky(EngineConfig::default()).await;
    for (mode, code) in [(1, "wait_timeout"), (2, "backend_unavailable")] {
        let holder = lease(m.acquire(req("holder", &["r"])).await.unwrap());
        let waiter = {
            let m = m.clone();
            tokio::spawn(async move { m.acquire(waiting("waiter", &["r"], 30 * SEC)).await })
        };
        while m.queues().await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        store.delivery.store(mode, Ordering::SeqCst);
        m.release(holder.id).await.unwrap();
        let e = waiter.await.unwrap().unwrap_err();
        assert_eq!(e.code().as_str(), code, "{e:?}");
        store.delivery.store(0, Ordering::SeqCst);
        let r = ResourceName::new("r").unwrap();
        if mode == 2 {
            // Given back in the background once the store answers.
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while m.resource(r.clone()).await.unwrap().holder.is_some() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the handoff was never given back"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        } else if let Some(l) = m.resource(r).await.unwrap().holder {
            // The store of this test does not take leases back itself.
            m.release(l.id).await.unwrap();
        }
    }
}

/// Lock policies: what a request leaves out comes from its resource's rule, whatever surface
/// it came through; the rule's bounds hold; a reload changes the rules live.
#[tokio::test]
async fn policies_fill_in_what_a_request_leaves_out_and_reload_live() {
    let rules = |v: serde_json::Value| serde_json::from_value(v).unwrap();
    let config = EngineConfig {
        policies: rules(serde_json::json!([
            {"match": "prod/**", "priority": "critical", "ttl": "90m", "max-ttl": "2h", "wait": "20s", "max-queue-size": 1}
        ])),
        ..EngineConfig::default()
    };
    let (m, _clock) = manual(config.clone()).await;
    let a = lease(m.acquire(req("a", &["prod/app"])).await.unwrap());
    assert_eq!(a.priority, Priority::Critical);
    assert_eq!(a.ttl, Some(Duration::from_secs(90 * 60)));
    // No rule: the server's defaults.
    let other = lease(m.acquire(req("a", &["dev/app"])).await.unwrap());
    assert_eq!(
        (other.priority, other.ttl),
        (Priority::Normal, Some(config.default_timeout))
    );
    // An explicit ttl above max-ttl is refused, naming the rule.
    let err = m
        .acquire(LockRequest {
            ttl: Ttl::After(Duration::from_secs(3 * 3600)),
            ..req("b", &["prod/db"])
        })
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("max-ttl 2h of policies[0]"),
        "{err}"
    );
    // Renewals stay within max-ttl too.
    assert!(m
        .renew(a.id, Some(Duration::from_secs(3 * 3600)))
        .await
        .is_err());
    m.renew(a.id, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    // The rule's wait applies: the request stands in line (attached) instead of being refused,
    // and the rule's max-queue-size (1) refuses the second in line.
    let m2 = m.clone();
    let waiter = tokio::spawn(async move { m2.acquire(req("b", &["prod/app"])).await });
    eventually(async || m.queues().await.unwrap().iter().any(|q| q.depth == 1)).await;
    match m.acquire(req("c", &["prod/app"])).await {
        Err(Error::QueueFull { max, .. }) => assert_eq!(max, 1),
        other => panic!("expected queue_full, got {other:?}"),
    }
    m.release(a.id).await.unwrap();
    let b = lease(waiter.await.unwrap().unwrap());
    assert_eq!(b.owner.as_str(), "b");
    // A lock taken for Atlantis never expires unless a rule gives a ttl.
    let atl = |r: &str| LockRequest {
        for_atlantis: true,
        wait: Some(Duration::ZERO),
        ..req("o/r#1", &[r])
    };
    assert_eq!(lease(m.acquire(atl("dev/x")).await.unwrap()).ttl, None);
    assert_eq!(
        lease(m.acquire(atl("prod/x")).await.unwrap()).ttl,
        Some(Duration::from_secs(90 * 60))
    );
    // Reload: new rules apply to the next request.
    m.reload(EngineConfig {
        policies: rules(serde_json::json!([{"match": "dev/**", "priority": "low"}])),
        ..config
    })
    .await
    .unwrap();
    let d = lease(m.acquire(req("z", &["dev/y"])).await.unwrap());
    assert_eq!(d.priority, Priority::Low);
}
