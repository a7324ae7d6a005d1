//! A store under test with a hand-moved clock, a recording event sink and terse request helpers.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::clock::{Clock, ManualClock};
use crate::error::Result;
use crate::event::{Event, EventType};
use crate::model::{LeaseId, Metadata, Owner, Priority, ResourceName, TicketId, Timestamp};
use crate::store::{EventSink, Store};
use crate::table::{AcquireRequest, Acquired, TableConfig, WaitMode};

use super::StoreFactory;

/// Keeps every published event, in order.
#[derive(Default)]
pub struct RecordingSink {
    events: Mutex<Vec<Event>>,
}

impl RecordingSink {
    pub fn take(&self) -> Vec<Event> {
        std::mem::take(&mut self.events.lock().unwrap())
    }
}

impl EventSink for RecordingSink {
    fn publish(&self, events: Vec<Event>) {
        self.events.lock().unwrap().extend(events);
    }
}

pub struct Harness {
    pub store: Arc<dyn Store>,
    pub clock: Arc<ManualClock>,
    pub sink: Arc<RecordingSink>,
    next_id: Mutex<u128>,
}

/// A try-lock request for one resource with ttl 60 s, its lease and ticket ids both `n`: for
/// tests that name their ids (`AcquireRequest { wait, ..try_request(1, "o", "r") }` for others).
pub fn try_request(n: u128, who: &str, resource: &str) -> AcquireRequest {
    AcquireRequest {
        lease_id: LeaseId::from_u128(n),
        ticket_id: TicketId::from_u128(n),
        owner: owner(who),
        resources: vec![name(resource)],
        priority: Priority::Normal,
        ttl: Some(Duration::from_secs(60)),
        metadata: None,
        wait: WaitMode::Try,
        reentry: Default::default(),
        queue_limits: Default::default(),
    }
}

/// A request under construction: `h.req("alice", &["r1"]).priority(High).wait(10s)`.
#[derive(Clone, Debug)]
pub struct Req {
    pub inner: AcquireRequest,
}

impl Req {
    pub fn priority(mut self, p: Priority) -> Self {
        self.inner.priority = p;
        self
    }

    pub fn ttl(mut self, ttl: Option<Duration>) -> Self {
        self.inner.ttl = ttl;
        self
    }

    /// Queue (attached) until now + `d`.
    /// Another holder under the same name: never the owner's own lease back.
    pub fn refuse_reentry(mut self) -> Self {
        self.inner.reentry = crate::model::Reentry::Refuse;
        self
    }

    pub fn wait_until(mut self, deadline: Timestamp) -> Self {
        self.inner.wait = WaitMode::Queue {
            deadline: Some(deadline),
            detached: false,
        };
        self
    }

    pub fn detached_until(mut self, deadline: Timestamp) -> Self {
        self.inner.wait = WaitMode::Queue {
            deadline: Some(deadline),
            detached: true,
        };
        self
    }

    /// Caps one resource's queue for this request (what a policy's max-queue-size does).
    pub fn queue_limit(mut self, resource: &str, max: usize) -> Self {
        self.inner.queue_limits.insert(name(resource), max);
        self
    }

    pub fn metadata(mut self, m: serde_json::Value) -> Self {
        self.inner.metadata = Some(Metadata::new(m).unwrap());
        self
    }
}

pub fn name(r: &str) -> ResourceName {
    ResourceName::new(r).unwrap()
}

pub fn owner(o: &str) -> Owner {
    Owner::new(o).unwrap()
}

impl Harness {
    pub async fn new(factory: &dyn StoreFactory, config: TableConfig) -> Harness {
        let clock = ManualClock::at_epoch_2026();
        let store = factory.open(config, clock.clone()).await;
        let sink = Arc::new(RecordingSink::default());
        store.attach_sink(sink.clone()).unwrap();
        Harness {
            store,
            clock,
            sink,
            next_id: Mutex::new(1),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    pub fn later(&self, d: Duration) -> Timestamp {
        self.now().plus(d)
    }

    /// A try-lock request with ttl 60s and fresh ids.
    pub fn req(&self, who: &str, resources: &[&str]) -> Req {
        let mut n = self.next_id.lock().unwrap();
        *n += 1;
        Req {
            inner: AcquireRequest {
                resources: resources.iter().map(|r| name(r)).collect(),
                ..try_request(*n, who, "r")
            },
        }
    }

    pub async fn acquire(&self, req: Req) -> Result<Acquired> {
        self.store.acquire(req.inner).await
    }

    /// Events published since the last call.
    pub fn events(&self) -> Vec<Event> {
        self.sink.take()
    }

    pub fn kinds(&self) -> Vec<EventType> {
        self.events().into_iter().map(|e| e.kind).collect()
    }
}
