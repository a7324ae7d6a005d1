//! The in-memory store: the lock table behind a mutex. Nothing survives a restart; for tests,
//! benchmarks and throw-away servers.
//!
//! A `std::sync::Mutex` is right here: nothing awaits while it is held, and every operation is
//! short. Events are published under the lock, so their order is the commit order.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::error::Result;
use crate::model::{Cycle, Lease, LeaseId, ResourceName, TicketId, TicketView, Timestamp};
use crate::table::{LeaseFilter, LockTable, Op, Outcome, QueueSummary, ResourceInfo, TableConfig};

use super::{EventSink, SinkSlot, Store};

pub struct InMemoryStore {
    table: Mutex<LockTable>,
    clock: Arc<dyn Clock>,
    sink: SinkSlot,
}

impl InMemoryStore {
    pub fn new(config: TableConfig, clock: Arc<dyn Clock>) -> Self {
        InMemoryStore {
            table: Mutex::new(LockTable::new(config)),
            clock,
            sink: SinkSlot::default(),
        }
    }

    fn table(&self) -> MutexGuard<'_, LockTable> {
        // A panic while holding the lock would be a bug in the table; keep serving what is there.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies an operation synchronously (benchmarks and the schedule tests use this directly).
    pub fn apply_now(&self, op: Op) -> Result<Outcome> {
        let mut t = self.table();
        let applied = t.apply(op, self.clock.now());
        self.sink.publish(applied.events);
        applied.result
    }

    /// Runs `f` on the table under the lock (memory measurements, tests).
    pub fn with_table<R>(&self, f: impl FnOnce(&LockTable) -> R) -> R {
        f(&self.table())
    }
}

#[async_trait]
impl Store for InMemoryStore {
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn attach_sink(&self, sink: Arc<dyn EventSink>) -> Result<()> {
        self.sink.set(sink)
    }

    async fn apply(&self, op: Op) -> Result<Outcome> {
        self.apply_now(op)
    }

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        Ok(self.table().get_lease(&id, self.clock.now()))
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        Ok(self.table().get_ticket(&id, self.clock.now()))
    }

    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        Ok(self.table().list(&filter, self.clock.now()))
    }

    async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo> {
        Ok(self.table().resource_info(&resource, self.clock.now()))
    }

    async fn queues(&self) -> Result<Vec<QueueSummary>> {
        Ok(self.table().queues(self.clock.now()))
    }

    async fn find_deadlocks(&self) -> Result<Vec<Cycle>> {
        Ok(self.table().find_deadlocks(self.clock.now()))
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        Ok(self.table().next_deadline())
    }

    async fn now(&self) -> Result<Timestamp> {
        Ok(self.clock.now())
    }

    async fn ping(&self) -> Result<Duration> {
        Ok(Duration::ZERO)
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }

    async fn set_table_config(&self, config: TableConfig) -> Result<()> {
        self.table().set_config(config);
        Ok(())
    }

    async fn snapshot(&self) -> Result<crate::table::Snapshot> {
        Ok(self.table().snapshot())
    }
}
