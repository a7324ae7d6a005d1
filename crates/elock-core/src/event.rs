//! Events: facts about what happened, published after the change they describe commits (docs/api.md, "Events").

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{
    duration_text, Cycle, Lease, LeaseId, Owner, Priority, ResourceName, Ticket, TicketId,
    Timestamp,
};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum EventType {
    #[serde(rename = "lock.acquired")]
    LockAcquired,
    #[serde(rename = "lock.released")]
    LockReleased,
    #[serde(rename = "lock.expired")]
    LockExpired,
    #[serde(rename = "lock.renewed")]
    LockRenewed,
    #[serde(rename = "lock.force_released")]
    LockForceReleased,
    #[serde(rename = "queue.enqueued")]
    QueueEnqueued,
    #[serde(rename = "queue.granted")]
    QueueGranted,
    #[serde(rename = "queue.timeout")]
    QueueTimeout,
    #[serde(rename = "queue.cancelled")]
    QueueCancelled,
    #[serde(rename = "deadlock.detected")]
    DeadlockDetected,
    #[serde(rename = "backend.unhealthy")]
    BackendUnhealthy,
    #[serde(rename = "backend.recovered")]
    BackendRecovered,
    #[serde(rename = "breaker.opened")]
    BreakerOpened,
    #[serde(rename = "breaker.closed")]
    BreakerClosed,
    #[serde(rename = "config.reloaded")]
    ConfigReloaded,
}

impl EventType {
    pub const ALL: [EventType; 15] = [
        EventType::LockAcquired,
        EventType::LockReleased,
        EventType::LockExpired,
        EventType::LockRenewed,
        EventType::LockForceReleased,
        EventType::QueueEnqueued,
        EventType::QueueGranted,
        EventType::QueueTimeout,
        EventType::QueueCancelled,
        EventType::DeadlockDetected,
        EventType::BackendUnhealthy,
        EventType::BackendRecovered,
        EventType::BreakerOpened,
        EventType::BreakerClosed,
        EventType::ConfigReloaded,
    ];

    pub fn name(self) -> &'static str {
        match self {
            EventType::LockAcquired => "lock.acquired",
            EventType::LockReleased => "lock.released",
            EventType::LockExpired => "lock.expired",
            EventType::LockRenewed => "lock.renewed",
            EventType::LockForceReleased => "lock.force_released",
            EventType::QueueEnqueued => "queue.enqueued",
            EventType::QueueGranted => "queue.granted",
            EventType::QueueTimeout => "queue.timeout",
            EventType::QueueCancelled => "queue.cancelled",
            EventType::DeadlockDetected => "deadlock.detected",
            EventType::BackendUnhealthy => "backend.unhealthy",
            EventType::BackendRecovered => "backend.recovered",
            EventType::BreakerOpened => "breaker.opened",
            EventType::BreakerClosed => "breaker.closed",
            EventType::ConfigReloaded => "config.reloaded",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        Self::ALL.into_iter().find(|t| t.name() == s)
    }

    /// A comma-separated list (`lock.acquired,queue.granted`; blanks ignored), or the message
    /// naming the first unknown type and listing the known ones.
    pub fn parse_list(s: &str) -> Result<Vec<EventType>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(|t| {
                EventType::parse(t).ok_or_else(|| {
                    let known: Vec<_> = EventType::ALL.iter().map(|t| t.name()).collect();
                    format!("unknown event type {t:?}; known: {}", known.join(", "))
                })
            })
            .collect()
    }

    /// Events after which the resource is free (before any handoff in the same step).
    pub fn frees_resources(self) -> bool {
        matches!(
            self,
            EventType::LockReleased | EventType::LockExpired | EventType::LockForceReleased
        )
    }

    /// Events that grant resources.
    pub fn grants(self) -> bool {
        matches!(self, EventType::LockAcquired | EventType::QueueGranted)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Assigned when published: strictly increasing in publication (= commit) order.
    pub id: u64,
    #[serde(rename = "type")]
    pub kind: EventType,
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub instance: Option<Arc<str>>,
    #[serde(default)]
    pub resources: Vec<ResourceName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<LeaseId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_id: Option<TicketId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Priority>,
    /// The token of a single-resource grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fencing_token: Option<u64>,
    /// Every resource's token, for grants of several resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<std::collections::HashMap<String, u64>>))]
    pub fencing_tokens: Option<BTreeMap<ResourceName, u64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<crate::model::CycleEdge>>))]
    pub cycle: Option<Cycle>,
    /// How long the ticket waited (`queue.granted`, `queue.timeout`, `queue.cancelled`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>))]
    pub waited: Option<Duration>,
    /// How long the lease was held (`lock.released`, `lock.expired`, `lock.force_released`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration_text::option"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::model::DurationText>))]
    pub held: Option<Duration>,
    /// The granted lease, for the manager to hand to a waiting caller. Not part of the wire form.
    #[serde(skip)]
    pub lease: Option<Box<Lease>>,
}

impl Event {
    pub fn new(kind: EventType, at: Timestamp) -> Self {
        Event {
            id: 0,
            kind,
            at,
            instance: None,
            resources: Vec::new(),
            lease_id: None,
            ticket_id: None,
            owner: None,
            priority: None,
            fencing_token: None,
            fencing_tokens: None,
            reason: None,
            cycle: None,
            waited: None,
            held: None,
            lease: None,
        }
    }

    /// An event about a lease; `with_lease` keeps the lease itself for waiters.
    pub fn for_lease(kind: EventType, at: Timestamp, lease: &Lease, with_lease: bool) -> Self {
        let mut e = Event::new(kind, at);
        e.resources = lease.resource_names();
        e.lease_id = Some(lease.id);
        e.owner = Some(lease.owner.clone());
        e.priority = Some(lease.priority);
        if kind.grants() {
            if let [only] = lease.resources.as_slice() {
                e.fencing_token = Some(only.fencing_token);
            } else {
                e.fencing_tokens = Some(
                    lease
                        .resources
                        .iter()
                        .map(|h| (h.resource.clone(), h.fencing_token))
                        .collect(),
                );
            }
        }
        if kind.frees_resources() {
            e.held = Some(at.since(lease.acquired_at));
        }
        if with_lease {
            e.lease = Some(Box::new(lease.clone()));
        }
        e
    }

    pub fn for_ticket(kind: EventType, at: Timestamp, ticket: &Ticket) -> Self {
        let mut e = Event::new(kind, at);
        e.resources = ticket.resources.clone();
        e.ticket_id = Some(ticket.id);
        e.owner = Some(ticket.owner.clone());
        e.priority = Some(ticket.priority);
        if kind != EventType::QueueEnqueued {
            e.waited = Some(at.since(ticket.enqueued_at));
        }
        e
    }

    pub fn with_reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_by_name() {
        for t in EventType::ALL {
            assert_eq!(EventType::parse(t.name()), Some(t));
            assert_eq!(serde_json::to_value(t).unwrap(), t.name());
        }
        assert_eq!(EventType::parse("lock.stolen"), None);
    }

    #[test]
    fn wire_form_uses_type_and_omits_absent_fields() {
        let e = Event::new(EventType::BreakerOpened, Timestamp::from_millis(0));
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["type"], "breaker.opened");
        assert!(v.get("lease_id").is_none());
        assert!(v.get("lease").is_none());
    }
}
