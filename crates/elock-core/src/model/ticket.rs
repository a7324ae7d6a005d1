//! A ticket: a queued request, granted by handoff when it reaches the head of every queue it is in.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::time::duration_text;
use super::{LeaseId, Metadata, Owner, Priority, ResourceName, TicketId, Timestamp};

/// What a request whose owner already holds the resources gets.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reentry {
    /// The owner's own lease back (`reentrant: true`): one holder, however often it asks.
    #[default]
    Allow,
    /// Never its own lease: the request is another holder under the same name, refused
    /// (`locked`) or queued behind the lease like anyone else's. Waiting for one's own name is
    /// then not a deadlock: the other holder will release.
    Refuse,
}

impl Reentry {
    pub fn is_allow(&self) -> bool {
        *self == Reentry::Allow
    }
}

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
    /// `refuse`: waiting behind a lease of the same owner is not a deadlock.
    #[serde(default, skip_serializing_if = "Reentry::is_allow")]
    pub reentry: Reentry,
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
