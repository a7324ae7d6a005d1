//! The seam between policy and state: a [`Store`] speaks lock-table operations, not key-value
//! get and put, because only the store can make a grant and its handoff atomic.
//!
//! Every store publishes the events of each committed transition to its [`EventSink`], in commit
//! order, after the commit (for the durable store: after the fsync). The manager's sink wakes
//! waiters and feeds the event bus from that single ordered stream.

mod durable;
mod memory;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::model::{Cycle, Lease, LeaseId, ResourceName, TicketId, TicketView};
use crate::table::{
    AcquireRequest, Acquired, CancelReason, DeadlockRecord, ImportReport, LeaseFilter, Op, Outcome,
    QueueSummary, ResolutionPolicy, ResourceInfo, Snapshot, TableConfig,
};

pub use durable::{DurableStore, DurableStoreStats, LogOptions};
pub use memory::InMemoryStore;

/// Receives the events of committed transitions, in commit order. Must not block.
pub trait EventSink: Send + Sync + 'static {
    fn publish(&self, events: Vec<Event>);
}

/// A store's sink, set once when a manager attaches; events before that are dropped.
#[derive(Default)]
pub struct SinkSlot(OnceLock<Arc<dyn EventSink>>);

impl SinkSlot {
    pub fn set(&self, sink: Arc<dyn EventSink>) -> Result<()> {
        self.0
            .set(sink)
            .map_err(|_| Error::Internal("this store already has an event sink".into()))
    }

    pub fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        if let Some(sink) = self.0.get() {
            sink.publish(events);
        }
    }
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `memory`, `embedded`, `redis`, ...
    fn kind(&self) -> &'static str;

    /// Where the events of committed transitions go. Called once, by the manager.
    fn attach_sink(&self, sink: Arc<dyn EventSink>) -> Result<()>;

    /// For stores shared by several servers: how often a waiter re-reads its ticket and the
    /// expiry timer looks again, because another server may have changed them without this one
    /// hearing of it. `None`: every change goes through this process.
    fn recheck_interval(&self) -> Option<Duration> {
        None
    }

    /// Backend gauges for /metrics (Redis: `redis_memory_used_bytes`, ...), without the
    /// `atlantis_enhanced_locking_` prefix. Empty for stores in this process.
    async fn backend_gauges(&self) -> Result<Vec<(&'static str, i64)>> {
        Ok(Vec::new())
    }

    /// Ids for a new acquire request. A store that spreads its data (the Redis store's shards)
    /// may put a placement hint in them, so that look-ups by id go straight to the right place;
    /// the default is 128 random bits each.
    fn new_ids(&self, resources: &[ResourceName]) -> (LeaseId, TicketId) {
        let _ = resources;
        (LeaseId::random(), TicketId::random())
    }

    /// A lease granted by handoff to a waiter of this server is about to be given to that
    /// waiter. Stores shared by several servers release such a lease if the server is taken
    /// for dead first (nobody would hold it); `false` says that happened, and the lease must
    /// not be given. Stores in this process have nothing to do.
    async fn delivered(&self, lease: &Lease) -> Result<bool> {
        let _ = lease;
        Ok(true)
    }

    /// Applies one lock-table transition atomically, at the store's current time.
    async fn apply(&self, op: Op) -> Result<Outcome>;

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>>;
    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>>;
    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>>;
    async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo>;
    async fn queues(&self) -> Result<Vec<QueueSummary>>;
    async fn find_deadlocks(&self) -> Result<Vec<Cycle>>;
    /// When the next lease expires, ticket times out or stalled queue may change order.
    async fn next_deadline(&self) -> Result<Option<crate::model::Timestamp>>;
    /// The store's current time (the clock expiry and aging are measured by).
    async fn now(&self) -> Result<crate::model::Timestamp>;

    /// Round trip to the backend; its latency.
    async fn ping(&self) -> Result<Duration>;
    /// Returns once everything acknowledged so far is durable.
    async fn flush(&self) -> Result<()>;
    /// Changes the live settings of the lock table.
    async fn set_table_config(&self, config: TableConfig) -> Result<()>;
    /// Every lease, ticket and fencing counter (`elock export`).
    async fn snapshot(&self) -> Result<Snapshot>;

    // Typed conveniences over `apply`.

    async fn acquire(&self, req: AcquireRequest) -> Result<Acquired> {
        match self.apply(Op::Acquire(req)).await? {
            Outcome::Acquired(a) => Ok(a),
            other => Err(unexpected(other)),
        }
    }

    async fn release(&self, id: LeaseId) -> Result<Lease> {
        lease_of(self.apply(Op::Release(id)).await?)
    }

    async fn renew(&self, id: LeaseId, ttl: Option<Duration>) -> Result<Lease> {
        lease_of(self.apply(Op::Renew { lease_id: id, ttl }).await?)
    }

    async fn cancel_ticket(&self, id: TicketId, reason: CancelReason) -> Result<TicketView> {
        match self
            .apply(Op::Cancel {
                ticket_id: id,
                reason,
            })
            .await?
        {
            Outcome::Ticket(t) => Ok(t),
            other => Err(unexpected(other)),
        }
    }

    async fn force_release(&self, resource: ResourceName, reason: String) -> Result<Lease> {
        lease_of(self.apply(Op::ForceRelease { resource, reason }).await?)
    }

    async fn expire_due(&self) -> Result<Vec<Lease>> {
        match self.apply(Op::ExpireDue).await? {
            Outcome::Leases(l) => Ok(l),
            other => Err(unexpected(other)),
        }
    }

    async fn import(&self, snapshot: Snapshot) -> Result<ImportReport> {
        match self.apply(Op::Import(Box::new(snapshot))).await? {
            Outcome::Imported(r) => Ok(r),
            other => Err(unexpected(other)),
        }
    }

    async fn resolve_deadlocks(&self, policy: ResolutionPolicy) -> Result<Vec<DeadlockRecord>> {
        match self.apply(Op::ResolveDeadlocks(policy)).await? {
            Outcome::Deadlocks(d) => Ok(d),
            other => Err(unexpected(other)),
        }
    }
}

fn lease_of(o: Outcome) -> Result<Lease> {
    match o {
        Outcome::Lease(l) => Ok(l),
        other => Err(unexpected(other)),
    }
}

fn unexpected(o: Outcome) -> Error {
    Error::Internal(format!("store answered with an unexpected outcome: {o:?}"))
}
