//! The manager: composes a store with elock's policies.
//!
//! - retry with exponential backoff and jitter for backend failures ([`retry`]);
//! - the circuit breaker ([`breaker`]);
//! - deadlock prevention (in the table) and periodic detection ([`tasks`]), with a history;
//! - the event bus ([`bus`]) and statistics with the health score ([`stats`]);
//! - the expiry timer, which sleeps until the store's next deadline ([`tasks`]);
//! - blocking waits that end when granted, timed out, cancelled or chosen as a deadlock victim
//!   ([`acquire`], [`waiters`]).
//!
//! Each policy is a small module with its own tests; this file only composes them.

mod acquire;
pub mod breaker;
pub mod bus;
mod deadlocks;
pub mod retry;
pub mod stats;
mod tasks;
mod unsettled;
pub mod waiters;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::config::EngineConfig;
use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::model::{Lease, LeaseId, ResourceName, TicketId, TicketView, Timestamp};
use crate::store::{EventSink, Store};
use crate::table::{CancelReason, DeadlockRecord, LeaseFilter, QueueSummary, ResourceInfo};

pub use crate::api::{BackendHealth, DeadlockReport, Health, ManagerStats};
pub use acquire::{LockRequest, Ttl};
pub use breaker::BreakerState;
pub use bus::{EventBus, Subscription};
pub use deadlocks::DeadlockHistory;
pub use stats::{HealthStatus, StatsSnapshot};

/// What `cleanup` removes (POST /api/v1/cleanup).
#[derive(Clone, Debug, PartialEq)]
pub enum Cleanup {
    /// Every lease past its deadline (normally none: the timer reaps them at once).
    ExpiredOnly,
    /// Whatever holds this resource, by force.
    Resource(ResourceName),
}

pub(crate) struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Read on every request: an `Arc`, so a read is a pointer clone, not a copy.
    config: RwLock<Arc<EngineConfig>>,
    breaker: breaker::CircuitBreaker,
    bus: Arc<EventBus>,
    stats: Arc<stats::Stats>,
    observers: Arc<[Arc<dyn EventObserver>]>,
    waiters: Arc<waiters::Waiters>,
    /// `events.enabled`, shared with the dispatcher; reloadable.
    events_enabled: Arc<AtomicBool>,
    history: DeadlockHistory,
    timer: Notify,
    /// The deadline the expiry timer sleeps until (ms; `u64::MAX`: none, or re-reading). A
    /// request wakes the timer only when it creates an earlier deadline.
    armed: AtomicU64,
    started: Instant,
    /// Acquires answered `backend_unavailable` that may have taken something.
    unsettled: unsettled::Unsettled,
    /// Turns true when the server begins to stop: attached waits end (`shutting_down`).
    closing: watch::Sender<bool>,
}

/// Stops the background tasks when the last handle to the manager goes away.
struct Lifetime {
    shutdown: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Lifetime {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        for t in self
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            t.abort();
        }
    }
}

#[derive(Clone)]
pub struct Manager {
    inner: Arc<Inner>,
    lifetime: Arc<Lifetime>,
}

/// Sees every event synchronously, in commit order, before the bus (metrics). Must be cheap and
/// must not block: it runs on the lock path.
pub trait EventObserver: Send + Sync + 'static {
    fn observe(&self, event: &Event);
}

/// The manager's event sink: statistics, observers, waiters, then the bus (when
/// `events.enabled`), in commit order.
struct Dispatcher {
    stats: Arc<stats::Stats>,
    observers: Arc<[Arc<dyn EventObserver>]>,
    waiters: Arc<waiters::Waiters>,
    bus: Arc<EventBus>,
    events_enabled: Arc<AtomicBool>,
}

impl EventSink for Dispatcher {
    fn publish(&self, events: Vec<Event>) {
        for e in &events {
            self.stats.observe(e);
            for o in self.observers.iter() {
                o.observe(e);
            }
            self.waiters.route(e);
        }
        if self.events_enabled.load(Ordering::Relaxed) {
            self.bus.publish(events);
        }
    }
}

impl Manager {
    /// Attaches to `store`, reads its state, and starts the expiry timer, the deadlock detector
    /// and the backend health check. Must be called inside a tokio runtime.
    pub async fn start(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Manager> {
        Self::start_observed(store, config, clock, Vec::new()).await
    }

    /// Like [`Manager::start`], with observers that see every event synchronously.
    pub async fn start_observed(
        store: Arc<dyn Store>,
        config: EngineConfig,
        clock: Arc<dyn Clock>,
        observers: Vec<Arc<dyn EventObserver>>,
    ) -> Result<Manager> {
        let observers: Arc<[Arc<dyn EventObserver>]> = observers.into();
        // Event ids go on increasing across restarts: they start at the start time (µs).
        let first_id = clock.now().as_millis().saturating_mul(1000);
        let bus = Arc::new(EventBus::starting_at(
            config.events.buffer_size,
            &config.instance,
            first_id,
        ));
        let stats = Arc::new(stats::Stats::new());
        let waiters = Arc::new(waiters::Waiters::default());
        let events_enabled = Arc::new(AtomicBool::new(config.events.enabled));
        store.set_table_config(config.table_config()).await?;
        store.attach_sink(Arc::new(Dispatcher {
            stats: stats.clone(),
            observers: observers.clone(),
            waiters: waiters.clone(),
            bus: bus.clone(),
            events_enabled: events_enabled.clone(),
        }))?;
        let held = store.list(LeaseFilter::default()).await?.len();
        let queued: usize = store.queues().await?.iter().map(|q| q.depth).sum();
        stats.seed(held, queued);
        let inner = Arc::new(Inner {
            store,
            clock,
            breaker: breaker::CircuitBreaker::new(config.circuit_breaker.clone()),
            config: RwLock::new(Arc::new(config)),
            bus,
            stats,
            observers,
            waiters,
            events_enabled,
            history: DeadlockHistory::new(1000),
            timer: Notify::new(),
            armed: AtomicU64::new(u64::MAX),
            started: Instant::now(),
            unsettled: Default::default(),
            closing: watch::channel(false).0,
        });
        let (shutdown, _) = watch::channel(false);
        let tasks = tasks::spawn_all(&inner, &shutdown);
        Ok(Manager {
            inner,
            lifetime: Arc::new(Lifetime {
                shutdown,
                tasks: Mutex::new(tasks),
            }),
        })
    }

    pub fn config(&self) -> EngineConfig {
        (*self.inner.config()).clone()
    }

    /// The circuit breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.inner.breaker.state(self.inner.clock.now())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    pub fn bus(&self) -> &Arc<EventBus> {
        &self.inner.bus
    }

    pub fn subscribe(&self) -> Subscription {
        self.inner.bus.subscribe()
    }

    pub async fn acquire(&self, req: LockRequest) -> Result<crate::table::Acquired> {
        acquire::acquire(&self.inner, req).await.0
    }

    /// An acquire, and how long it stood in a queue waiting (zero for a try-lock, a detached
    /// ticket, or a wait that was never queued): what a latency measure leaves out.
    pub async fn acquire_timed(
        &self,
        req: LockRequest,
    ) -> (Result<crate::table::Acquired>, Duration) {
        acquire::acquire(&self.inner, req).await
    }

    pub async fn release(&self, id: LeaseId) -> Result<Lease> {
        self.inner.stats.request();
        self.inner.guarded(|| self.inner.store.release(id)).await
    }

    /// Extends a lease: `expires_at = now + ttl` (the lease's own ttl when none is given).
    pub async fn renew(&self, id: LeaseId, ttl: Option<Duration>) -> Result<Lease> {
        self.inner.stats.request();
        // A renewal to a new ttl stays within its resources' max-ttl (read only when rules
        // exist; a renewal to the lease's own ttl was bounded when it was granted).
        let policies = &self.inner.config().policies;
        if let (Some(ttl), false) = (ttl, policies.is_empty()) {
            let lease = self.get_lease(id).await?;
            let names: Vec<ResourceName> =
                lease.resources.iter().map(|h| h.resource.clone()).collect();
            policies.check_renewal(&names, ttl)?;
        }
        let lease = self
            .inner
            .guarded(|| self.inner.store.renew(id, ttl))
            .await?;
        self.inner.wake_timer_before(lease.expires_at);
        Ok(lease)
    }

    pub async fn cancel_ticket(&self, id: TicketId) -> Result<TicketView> {
        self.inner.stats.request();
        self.inner
            .guarded(|| self.inner.store.cancel_ticket(id, CancelReason::Cancelled))
            .await
    }

    pub async fn force_release(&self, resource: ResourceName, reason: String) -> Result<Lease> {
        self.inner.stats.request();
        self.inner
            .guarded(|| {
                self.inner
                    .store
                    .force_release(resource.clone(), reason.clone())
            })
            .await
    }

    pub async fn cleanup(&self, what: Cleanup) -> Result<Vec<Lease>> {
        self.inner.stats.request();
        match what {
            Cleanup::ExpiredOnly => self.inner.guarded(|| self.inner.store.expire_due()).await,
            Cleanup::Resource(r) => Ok(vec![self.force_release(r, "cleanup".into()).await?]),
        }
    }

    pub async fn get_lease(&self, id: LeaseId) -> Result<Lease> {
        self.inner
            .guarded(|| self.inner.store.get_lease(id))
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "lease {id} not found (released, expired or never granted)"
                ))
            })
    }

    pub async fn get_ticket(&self, id: TicketId) -> Result<TicketView> {
        self.inner
            .guarded(|| self.inner.store.get_ticket(id))
            .await?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "ticket {id} not found (granted, timed out or cancelled)"
                ))
            })
    }

    pub async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        self.inner
            .guarded(|| self.inner.store.list(filter.clone()))
            .await
    }

    pub async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo> {
        self.inner
            .guarded(|| self.inner.store.resource(resource.clone()))
            .await
    }

    pub async fn queues(&self) -> Result<Vec<QueueSummary>> {
        self.inner.guarded(|| self.inner.store.queues()).await
    }

    pub async fn deadlocks(&self) -> Result<DeadlockReport> {
        Ok(DeadlockReport {
            active: self
                .inner
                .guarded(|| self.inner.store.find_deadlocks())
                .await?,
            history: self.inner.history.all(),
        })
    }

    /// Every lease, ticket and fencing counter.
    pub async fn export(&self) -> Result<crate::table::Snapshot> {
        self.inner.guarded(|| self.inner.store.snapshot()).await
    }

    /// Adds what does not conflict; reports what was skipped and why.
    pub async fn import(
        &self,
        mut snapshot: crate::table::Snapshot,
    ) -> Result<crate::table::ImportReport> {
        self.inner.stats.request();
        // Leases imported without expiry (Atlantis's locks) follow their resources' policy.
        let policies = &self.inner.config().policies;
        let now = self.inner.clock.now();
        for lease in &mut snapshot.leases {
            policies.settle_import(lease, now);
        }
        let report = self
            .inner
            .guarded(|| self.inner.store.import(snapshot.clone()))
            .await?;
        self.inner.timer.notify_one();
        Ok(report)
    }

    /// Runs the deadlock detector once, now (it also runs every `check-interval`).
    pub async fn detect_deadlocks(&self) -> Result<Vec<DeadlockRecord>> {
        self.inner.detect_deadlocks().await
    }

    pub async fn stats(&self) -> ManagerStats {
        let now = self.inner.clock.now();
        let breaker = self.inner.breaker.state(now);
        let deepest = self
            .inner
            .store
            .queues()
            .await
            .ok()
            .and_then(|q| q.first().map(|q| q.depth))
            .unwrap_or(0);
        let snapshot = self.inner.stats.snapshot(now);
        ManagerStats {
            health_score: self.inner.score(&snapshot, breaker, deepest),
            stats: snapshot,
            backend: self.inner.store.kind().to_string(),
            breaker,
            events_lost: self.inner.bus.lost(),
        }
    }

    pub async fn health(&self) -> Health {
        let ping = tokio::time::timeout(Duration::from_secs(2), self.inner.store.ping()).await;
        let (healthy, latency) = match ping {
            Ok(Ok(d)) => (true, d),
            _ => (false, Duration::from_secs(2)),
        };
        self.inner.set_backend_healthy(healthy);
        let stats = self.stats().await;
        Health {
            status: stats::health_status(stats.health_score),
            health_score: stats.health_score,
            backend: BackendHealth {
                kind: self.inner.store.kind().to_string(),
                healthy,
                latency_ms: latency.as_secs_f64() * 1000.0,
            },
            breaker: stats.breaker,
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime: self.inner.started.elapsed(),
        }
    }

    /// Applies the settings that can change live; returns the names of those that changed but
    /// need a restart.
    pub async fn reload(&self, config: EngineConfig) -> Result<Vec<&'static str>> {
        let old = self.config();
        let mut restart = Vec::new();
        if old.instance != config.instance {
            restart.push("instance");
        }
        if old.events.buffer_size != config.events.buffer_size {
            restart.push("events.buffer-size");
        }
        self.inner
            .store
            .set_table_config(config.table_config())
            .await?;
        self.inner
            .breaker
            .set_config(config.circuit_breaker.clone());
        self.inner
            .events_enabled
            .store(config.events.enabled, Ordering::Relaxed);
        *self.inner.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        self.inner.timer.notify_one();
        self.inner.publish_local(Event::new(
            EventType::ConfigReloaded,
            self.inner.clock.now(),
        ));
        Ok(restart)
    }

    /// The server begins to stop: every attached wait ends now with `shutting_down` (its ticket
    /// cancelled), and so does any new one, instead of keeping the shutdown waiting.
    pub fn begin_shutdown(&self) {
        let _ = self.inner.closing.send(true);
    }

    /// Stops the background tasks and makes everything acknowledged durable.
    pub async fn shutdown(&self) -> Result<()> {
        let _ = self.lifetime.shutdown.send(true);
        let tasks: Vec<_> = self
            .lifetime
            .tasks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        for t in tasks {
            t.abort();
            let _ = t.await;
        }
        self.inner.store.flush().await
    }
}

impl Inner {
    /// Completes when the server begins to stop.
    async fn closing(&self) {
        let mut rx = self.closing.subscribe();
        let _ = rx.wait_for(|closing| *closing).await;
    }

    fn config(&self) -> Arc<EngineConfig> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Wakes the expiry timer if `deadline` comes before the one it sleeps until.
    fn wake_timer_before(&self, deadline: Option<Timestamp>) {
        if deadline.is_some_and(|d| d.as_millis() < self.armed.load(Ordering::Acquire)) {
            self.timer.notify_one();
        }
    }

    /// Publishes an event that did not come from a store transition (breaker, health, config).
    fn publish_local(&self, e: Event) {
        self.stats.observe(&e);
        for o in self.observers.iter() {
            o.observe(&e);
        }
        if self.events_enabled.load(Ordering::Relaxed) {
            self.bus.publish([e]);
        }
    }

    fn set_backend_healthy(&self, healthy: bool) {
        let was = self.stats.set_backend_healthy(healthy);
        if was != healthy {
            let kind = if healthy {
                EventType::BackendRecovered
            } else {
                EventType::BackendUnhealthy
            };
            self.publish_local(Event::new(kind, self.clock.now()).with_reason(self.store.kind()));
        }
    }

    fn score(&self, s: &StatsSnapshot, breaker: BreakerState, deepest: usize) -> u8 {
        stats::health_score(stats::HealthInputs {
            breaker,
            backend_healthy: self.stats.backend_healthy(),
            recent_success_rate: s.recent_success_rate,
            deepest_queue: deepest,
            max_queue_size: self.config().priority_queue.max_queue_size,
            deadlocks_last_hour: s.deadlocks_last_hour,
        })
    }

    /// A store call through the circuit breaker, retried with backoff on backend failures.
    async fn guarded<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let cfg = self.config();
        let retry = &cfg.retry;
        let mut attempt = 0;
        loop {
            let now = self.clock.now();
            if !self.breaker.allows(now) {
                return Err(Error::BackendUnavailable {
                    breaker: BreakerState::Open.name().into(),
                    message: "the circuit breaker is open after repeated backend failures; calls fail fast until it half-opens".into(),
                });
            }
            let result = call().await;
            // The outcome counts when it is known: a call that timed out after longer than
            // the breaker's timeout must still open it.
            let now = self.clock.now();
            match &result {
                Err(e) if e.is_backend_failure() => {
                    self.breaker_moved(self.breaker.on_failure(now));
                    if retry.enabled && attempt + 1 < retry.max_attempts {
                        self.stats.retry();
                        tokio::time::sleep(retry::backoff(retry, attempt)).await;
                        attempt += 1;
                        continue;
                    }
                }
                _ => self.breaker_moved(self.breaker.on_success(now)),
            }
            return result;
        }
    }

    fn breaker_moved(&self, t: Option<breaker::Transition>) {
        let kind = match t {
            Some(breaker::Transition::Opened) => EventType::BreakerOpened,
            Some(breaker::Transition::Closed) => EventType::BreakerClosed,
            None => return,
        };
        self.publish_local(Event::new(kind, self.clock.now()).with_reason(self.store.kind()));
    }

    async fn detect_deadlocks(&self) -> Result<Vec<DeadlockRecord>> {
        let policy = self.config().deadlock_detection.resolution_policy;
        let records = self
            .guarded(|| self.store.resolve_deadlocks(policy))
            .await?;
        for r in &records {
            self.history.push(r.clone());
        }
        Ok(records)
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }
}
