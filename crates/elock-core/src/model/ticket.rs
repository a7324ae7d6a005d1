//! A ticket: a queued request, granted by handoff when it reaches the head of every queue it is in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::duration_text;
use super::{LeaseId, Metadata, Owner, Priority, ResourceName, TicketId, Timestamp};

/// A ticket as the lock table stores it (and the durable store persists it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: TicketId,
    /// The id the lease will carry when the ticket is granted; chosen at enqueue, so that a
    /// requester that went away can still release what was granted to it.
    pub lease_id: LeaseId,
    pub owner: Owner,
    pub resources: Vec<ResourceName>,
    pub priority: Priority,
    pub enqueued_at: Timestamp,
    /// When the ticket times out (`queue.timeout`); `None` only if the caller asked for no limit.
    pub deadline: Option<Timestamp>,
    /// Detached tickets live without a connected client until granted or timed out.
    pub detached: bool,
    /// Enqueue order: ties of effective priority go to the smaller sequence number.
    pub seq: u64,
    /// The ttl the lease will get when granted.
    #[serde(with = "duration_text::option")]
    pub ttl: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Metadata>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// A ticket as callers see it: its effective priority and position in each queue at a given time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TicketView {
    pub id: TicketId,
    pub owner: Owner,
    pub resources: Vec<ResourceName>,
    pub priority: Priority,
    pub effective_priority: Priority,
    pub enqueued_at: Timestamp,
    pub deadline: Option<Timestamp>,
    pub detached: bool,
    /// Per resource, 1 = next.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, u32>))]
    pub position: BTreeMap<ResourceName, u32>,
    /// Shown only to the requester (acquire answers, ticket look-ups), never in queue listings:
    /// like a lease id, it is a capability.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_id: Option<LeaseId>,
}
