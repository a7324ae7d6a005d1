//! The table's operations as data: what the property test generates and every store applies.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::event::Event;
use crate::model::{
    Cycle, Lease, LeaseId, Metadata, Owner, Priority, Reentry, ResourceName, TicketId, TicketView,
    Timestamp,
};

use super::{DeadlockRecord, LockTable, ResolutionPolicy};
use crate::policy::QueueLimits;

#[derive(Clone, Debug, PartialEq)]
pub struct AcquireRequest {
    /// The id the lease will carry, chosen by the caller (a retry with the same id is idempotent).
    pub lease_id: LeaseId,
    /// The id a ticket will carry if the request is queued.
    pub ticket_id: TicketId,
    pub owner: Owner,
    pub resources: Vec<ResourceName>,
    pub priority: Priority,
    /// `None`: no expiry (refused unless the table allows it).
    pub ttl: Option<Duration>,
    pub metadata: Option<Metadata>,
    pub wait: WaitMode,
    /// `Refuse`: never the owner's own lease back (each request its own holder).
    pub reentry: Reentry,
    /// Tighter queue caps than `max-queue-size` for some resources (their policy's).
    pub queue_limits: QueueLimits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitMode {
    /// Granted at once or refused with `locked`.
    Try,
    /// Queued if not granted at once, until `deadline`.
    Queue {
        deadline: Option<Timestamp>,
        detached: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Acquired {
    Granted { lease: Lease, reentrant: bool },
    Queued { ticket: TicketView },
}

impl Acquired {
    pub fn lease(&self) -> Option<&Lease> {
        match self {
            Acquired::Granted { lease, .. } => Some(lease),
            Acquired::Queued { .. } => None,
        }
    }
}

/// Why a ticket left its queue without being granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CancelReason {
    /// Cancelled by a caller (DELETE /tickets/{id}).
    Cancelled,
    /// The attached caller went away.
    ClientGone,
    /// Chosen as a deadlock victim.
    Deadlock(Cycle),
    /// A resource it asked for has minted its last fencing token.
    FencingExhausted,
}

impl CancelReason {
    pub fn name(&self) -> &'static str {
        match self {
            CancelReason::Cancelled => "cancelled",
            CancelReason::ClientGone => "client_gone",
            CancelReason::Deadlock(_) => "deadlock",
            CancelReason::FencingExhausted => "fencing_exhausted",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Acquire(AcquireRequest),
    Release(LeaseId),
    Renew {
        lease_id: LeaseId,
        ttl: Option<Duration>,
    },
    Cancel {
        ticket_id: TicketId,
        reason: CancelReason,
    },
    ForceRelease {
        resource: ResourceName,
        reason: String,
    },
    /// Expire due leases, time out due tickets, re-examine stalled queues; returns what expired.
    ExpireDue,
    ResolveDeadlocks(ResolutionPolicy),
    /// Adds the records of a snapshot that do not conflict (`elock import`).
    Import(Box<super::Snapshot>),
}

#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Acquired(Acquired),
    Lease(Lease),
    Ticket(TicketView),
    Leases(Vec<Lease>),
    Deadlocks(Vec<DeadlockRecord>),
    Imported(super::ImportReport),
}

/// An operation's outcome and the events it caused (also on error: catching up with `now` may
/// have expired leases before the operation itself was refused).
#[derive(Clone, Debug, PartialEq)]
pub struct Applied {
    pub result: Result<Outcome>,
    pub events: Vec<Event>,
}

pub(super) fn dispatch(t: &mut LockTable, op: Op, now: Timestamp) -> Result<Outcome> {
    Ok(match op {
        Op::Acquire(req) => Outcome::Acquired(t.acquire(req, now)?),
        Op::Release(id) => Outcome::Lease(t.release(id, now)?),
        Op::Renew { lease_id, ttl } => Outcome::Lease(t.renew(lease_id, ttl, now)?),
        Op::Cancel { ticket_id, reason } => {
            Outcome::Ticket(t.cancel_ticket(ticket_id, reason, now)?)
        }
        Op::ForceRelease { resource, reason } => {
            Outcome::Lease(t.force_release(&resource, &reason, now)?)
        }
        Op::ExpireDue => Outcome::Leases(t.expire_due(now)),
        Op::ResolveDeadlocks(policy) => Outcome::Deadlocks(t.resolve_deadlocks(policy, now)),
        Op::Import(snapshot) => Outcome::Imported(t.import(*snapshot, now)?),
    })
}
