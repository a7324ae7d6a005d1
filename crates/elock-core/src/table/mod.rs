//! The lock table: elock's semantics as a pure, deterministic state machine.
//!
//! No I/O, no clock reads, no randomness, no async. Every operation takes the current time and
//! the ids it may need, changes the state, and records the events it caused (drained with
//! [`LockTable::take_events`]). Every store wraps this table (embedded stores) or re-implements
//! exactly these transitions (Redis, in Lua); the conformance suite and the model-based property
//! test hold them to it.
//!
//! Before any mutating operation the table first catches up with `now`: leases past their
//! deadline expire, tickets past theirs time out, stalled queues whose order changed by aging are
//! re-examined, and resources handed off. So expiry is exact whatever the timer's lateness; the
//! timer only matters when nobody calls.

mod deadlock;
mod operations;
mod persist;
mod query;
mod queue;
mod transitions;
mod validate;

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use crate::event::Event;
use crate::model::{Lease, LeaseId, Owner, ResourceName, Ticket, TicketId, Timestamp};

pub use deadlock::{DeadlockRecord, Resolution, ResolutionPolicy, VictimFacts};
pub use operations::{AcquireRequest, Acquired, Applied, CancelReason, Op, Outcome, WaitMode};
pub use persist::{ChangeSet, ImportReport, Skipped, Snapshot};
pub use query::{LeaseFilter, QueueSummary, ResourceInfo, StateFilter};
pub use queue::Aging;
pub use validate::{IMPORT_CLOCK_SKEW, MIN_TTL};

pub(crate) type Map<K, V> = HashMap<K, V, ahash::RandomState>;

/// Most resources one request may name.
pub const MAX_RESOURCES_PER_REQUEST: usize = 64;

/// The settings the table's semantics depend on (docs/configuration.md: enhanced-locking, priority-queue,
/// deadlock-detection).
#[derive(Clone, Debug, PartialEq)]
pub struct TableConfig {
    /// A ttl above this is refused, never silently cut.
    pub max_timeout: Duration,
    /// The longest a ticket may wait (the larger of `max-timeout` and `queue-timeout`): imported
    /// ticket deadlines beyond it are refused.
    pub max_queue_wait: Duration,
    /// Whether a lease may have no expiry (Atlantis-compatible locks, when configured).
    pub allow_no_ttl: bool,
    /// Per resource; a request that would exceed it is refused with `queue_full`.
    pub max_queue_size: usize,
    /// Anti-starvation: one priority level per threshold waited (zero: off).
    pub starvation_threshold: Duration,
    pub max_priority_boost: u8,
    /// Refuse the enqueue that would close a wait-for cycle.
    pub deadlock_prevention: bool,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            max_timeout: Duration::from_secs(2 * 3600),
            max_queue_wait: Duration::from_secs(2 * 3600),
            allow_no_ttl: false,
            max_queue_size: 1000,
            starvation_threshold: Duration::from_secs(120),
            max_priority_boost: 3,
            deadlock_prevention: true,
        }
    }
}

/// Per resource: who holds it, who waits, and the last fencing token minted.
#[derive(Debug, Default)]
pub(crate) struct ResourceState {
    holder: Option<LeaseId>,
    /// Kept after the resource is free, so tokens never go backwards.
    last_token: u64,
    queue: Option<Box<queue::Queue>>,
}

impl ResourceState {
    fn queue_len(&self) -> usize {
        self.queue.as_ref().map_or(0, |q| q.len())
    }
}

pub struct LockTable {
    config: TableConfig,
    aging: Aging,
    /// Boxed: at a million leases the map's buckets stay narrow (the table doubles in size at
    /// powers of two, so every byte of an entry counts twice).
    leases: Map<LeaseId, Box<Lease>>,
    tickets: Map<TicketId, Ticket>,
    resources: Map<ResourceName, ResourceState>,
    /// How many resources each owner holds (owners holding nothing are absent).
    holding: Map<Owner, u32>,
    /// The tickets of each waiting owner (owners waiting for nothing are absent).
    waiting: Map<Owner, Vec<TicketId>>,
    /// Lease deadlines, earliest first.
    expiries: BTreeSet<(Timestamp, LeaseId)>,
    /// Ticket deadlines (queue timeouts), earliest first.
    deadlines: BTreeSet<(Timestamp, TicketId)>,
    /// Free resources with a non-empty queue: their head waits for another resource. Aging can
    /// change their head, so they are re-examined when an effective priority next rises.
    stalled: BTreeSet<ResourceName>,
    aging_due: Option<Timestamp>,
    next_seq: u64,
    last_now: Timestamp,
    events: Vec<Event>,
    changes: Option<ChangeSet>,
}

impl LockTable {
    pub fn new(config: TableConfig) -> Self {
        let aging = Aging::new(config.starvation_threshold, config.max_priority_boost);
        LockTable {
            config,
            aging,
            leases: Map::default(),
            tickets: Map::default(),
            resources: Map::default(),
            holding: Map::default(),
            waiting: Map::default(),
            expiries: BTreeSet::new(),
            deadlines: BTreeSet::new(),
            stalled: BTreeSet::new(),
            aging_due: None,
            next_seq: 1,
            last_now: Timestamp::default(),
            events: Vec::new(),
            changes: None,
        }
    }

    pub fn config(&self) -> &TableConfig {
        &self.config
    }

    /// Changes the settings that can change live (limits, aging, prevention).
    pub fn set_config(&mut self, config: TableConfig) {
        self.aging = Aging::new(config.starvation_threshold, config.max_priority_boost);
        self.config = config;
    }

    /// The events recorded since the last call, in the order they happened.
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Applies one operation and returns its outcome with the events it caused.
    pub fn apply(&mut self, op: Op, now: Timestamp) -> Applied {
        let result = operations::dispatch(self, op, now);
        Applied {
            result,
            events: self.take_events(),
        }
    }

    /// The next instant at which something happens without a request: a lease expires, a ticket
    /// times out, or a stalled queue's order changes.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [
            self.expiries.first().map(|(t, _)| *t),
            self.deadlines.first().map(|(t, _)| *t),
            self.aging_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    pub fn lease_count(&self) -> usize {
        self.leases.len()
    }

    pub fn ticket_count(&self) -> usize {
        self.tickets.len()
    }
}

#[cfg(test)]
mod tests;
