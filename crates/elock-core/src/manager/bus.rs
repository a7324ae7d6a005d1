//! The event bus: numbers events in publication order, keeps the last `buffer-size` for
//! `Last-Event-ID` resume, and broadcasts them on a bounded channel. A subscriber that falls
//! behind loses the oldest events (counted in `lost`); the lock path never waits for anyone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;

use crate::event::{Event, EventType};

pub struct EventBus {
    tx: broadcast::Sender<Arc<Event>>,
    ring: Mutex<Ring>,
    capacity: usize,
    instance: Arc<str>,
    lost: Arc<AtomicU64>,
}

struct Ring {
    next_id: u64,
    events: VecDeque<Arc<Event>>,
}

/// Events older than the ring could not be replayed: the caller missed some.
#[derive(Debug, PartialEq, Eq)]
pub struct Gap {
    pub first_available: u64,
}

impl EventBus {
    /// A bus whose first event is number 1 (tests; one process's life).
    pub fn new(capacity: usize, instance: &str) -> Self {
        Self::starting_at(capacity, instance, 1)
    }

    /// A bus whose first event is number `first_id`. A server starts its numbering at the time
    /// it starts, in microseconds since the epoch: ids then keep increasing across restarts
    /// (whatever the store) unless a run published more than one event per microsecond of its
    /// life, and stay exact in JSON numbers until the year 2255.
    pub fn starting_at(capacity: usize, instance: &str, first_id: u64) -> Self {
        let capacity = capacity.max(1);
        EventBus {
            tx: broadcast::Sender::new(capacity),
            ring: Mutex::new(Ring {
                next_id: first_id.max(1),
                events: VecDeque::with_capacity(capacity),
            }),
            capacity,
            instance: Arc::from(instance),
            lost: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Numbers and publishes events, in the order given.
    pub fn publish(&self, events: impl IntoIterator<Item = Event>) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        for mut e in events {
            e.id = ring.next_id;
            ring.next_id += 1;
            e.instance = Some(self.instance.clone());
            e.lease = None;
            let e = Arc::new(e);
            if ring.events.len() == self.capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(e.clone());
            // No receivers is fine: events are facts, not requests.
            let _ = self.tx.send(e);
        }
    }

    pub fn subscribe(&self) -> Subscription {
        Subscription {
            rx: self.tx.subscribe(),
            lost: self.lost.clone(),
        }
    }

    /// Events with an id above `last_id`, from the ring; `Err(Gap)` if some are no longer kept
    /// (the ones still kept are then replayed by the caller's choice via `Gap::first_available`).
    ///
    /// An id this bus never issued (the caller saw the ids of an earlier run of the server) is
    /// a gap too: everything still kept is replayed.
    pub fn since(&self, last_id: u64) -> (Vec<Arc<Event>>, Option<Gap>) {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        if last_id >= ring.next_id {
            let first = ring.events.front().map_or(ring.next_id, |e| e.id);
            let events = ring.events.iter().cloned().collect();
            return (
                events,
                Some(Gap {
                    first_available: first,
                }),
            );
        }
        let events: Vec<_> = ring
            .events
            .iter()
            .filter(|e| e.id > last_id)
            .cloned()
            .collect();
        let first = ring.events.front().map_or(ring.next_id, |e| e.id);
        let gap = (last_id + 1 < first && last_id + 1 < ring.next_id).then_some(Gap {
            first_available: first,
        });
        (events, gap)
    }

    /// Events lost by subscribers that fell behind, since start.
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }
}

pub struct Subscription {
    rx: broadcast::Receiver<Arc<Event>>,
    lost: Arc<AtomicU64>,
}

impl Subscription {
    /// The next event; `None` when the bus is gone. Lagging skips (and counts) what was lost.
    pub async fn recv(&mut self) -> Option<Arc<Event>> {
        loop {
            match self.rx.recv().await {
                Ok(e) => return Some(e),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.lost.fetch_add(n, Ordering::Relaxed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }

    /// The next event of one of `types` (all types if empty).
    pub async fn recv_filtered(&mut self, types: &[EventType]) -> Option<Arc<Event>> {
        loop {
            let e = self.recv().await?;
            if types.is_empty() || types.contains(&e.kind) {
                return Some(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Timestamp;

    fn ev(kind: EventType) -> Event {
        Event::new(kind, Timestamp::from_millis(0))
    }

    #[tokio::test]
    async fn ids_increase_in_publication_order_and_carry_the_instance() {
        let bus = EventBus::new(10, "node-a");
        let mut sub = bus.subscribe();
        bus.publish([ev(EventType::LockAcquired), ev(EventType::LockReleased)]);
        let a = sub.recv().await.unwrap();
        let b = sub.recv().await.unwrap();
        assert_eq!((a.id, b.id), (1, 2));
        assert_eq!(a.instance.as_deref(), Some("node-a"));
        assert_eq!(b.kind, EventType::LockReleased);
    }

    #[tokio::test]
    async fn a_slow_subscriber_loses_old_events_and_the_loss_is_counted() {
        let bus = EventBus::new(4, "n");
        let mut sub = bus.subscribe();
        bus.publish((0..10).map(|_| ev(EventType::LockRenewed)));
        let first = sub.recv().await.unwrap();
        assert_eq!(first.id, 7, "the oldest six were dropped");
        assert_eq!(bus.lost(), 6);
    }

    #[test]
    fn resume_replays_from_the_ring_and_reports_gaps() {
        let bus = EventBus::new(3, "n");
        bus.publish((0..5).map(|_| ev(EventType::LockRenewed)));
        let (events, gap) = bus.since(3);
        assert_eq!(events.iter().map(|e| e.id).collect::<Vec<_>>(), vec![4, 5]);
        assert_eq!(gap, None);
        let (events, gap) = bus.since(0);
        assert_eq!(
            events.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(gap, Some(Gap { first_available: 3 }));
        assert!(bus.since(5).0.is_empty(), "nothing after the last id");
    }
}

#[cfg(test)]
mod restart_tests {
    use super::*;

    #[test]
    fn a_bus_started_later_numbers_after_an_earlier_one() {
        let first = EventBus::starting_at(4, "n", 1_000);
        first.publish(vec![crate::event::Event::new(
            crate::event::EventType::ConfigReloaded,
            crate::model::Timestamp::from_millis(0),
        )]);
        let last = first.since(0).0.last().map(|e| e.id).unwrap();
        let second = EventBus::starting_at(4, "n", 2_000);
        second.publish(vec![crate::event::Event::new(
            crate::event::EventType::ConfigReloaded,
            crate::model::Timestamp::from_millis(0),
        )]);
        assert!(second.since(0).0[0].id > last);
        // A client resuming with an id of the earlier run hears of the gap.
        assert!(second.since(last).1.is_some());
    }
}
