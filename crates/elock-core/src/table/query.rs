//! Read-only views of the table: leases, tickets with their positions, resources and queues.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::{
    duration_text, Lease, LeaseId, LeaseState, Owner, Priority, ResourceName, TicketId, TicketView,
    Timestamp,
};

use super::queue::order_key;
use super::LockTable;

/// `state` filter of GET /locks: `held`, or `expired` (past its deadline, not yet reaped).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StateFilter {
    Held,
    Expired,
}

/// The filters of GET /api/v1/locks (docs/api.md).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LeaseFilter {
    pub resource_prefix: Option<String>,
    pub owner: Option<Owner>,
    pub state: Option<StateFilter>,
    pub held_longer_than: Option<Duration>,
}

impl LeaseFilter {
    pub fn matches(&self, lease: &Lease, now: Timestamp) -> bool {
        if let Some(p) = &self.resource_prefix {
            if !lease
                .resources
                .iter()
                .any(|h| h.resource.as_str().starts_with(p.as_str()))
            {
                return false;
            }
        }
        if self.owner.as_ref().is_some_and(|o| *o != lease.owner) {
            return false;
        }
        match self.state {
            Some(StateFilter::Held) if lease.is_due(now) => return false,
            Some(StateFilter::Expired) if !lease.is_due(now) => return false,
            _ => {}
        }
        if let Some(d) = self.held_longer_than {
            if now.since(lease.acquired_at) <= d {
                return false;
            }
        }
        true
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// GET /api/v1/resource: who holds it, who waits, the last token minted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResourceInfo {
    pub resource: ResourceName,
    pub holder: Option<Lease>,
    pub queue: Vec<TicketView>,
    pub last_fencing_token: u64,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// GET /api/v1/queues: one non-empty queue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QueueSummary {
    pub resource: ResourceName,
    pub depth: usize,
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::HashMap<String, usize>))]
    pub by_priority: BTreeMap<Priority, usize>,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::model::DurationText))]
    #[serde(with = "duration_text")]
    pub oldest_wait: Duration,
}

impl LockTable {
    /// A lease as it stands at `now` (`expired` if past its deadline but not yet reaped).
    pub fn get_lease(&self, id: &LeaseId, now: Timestamp) -> Option<Lease> {
        self.leases.get(id).map(|l| with_state_at(l, now))
    }

    pub fn get_ticket(&self, id: &TicketId, now: Timestamp) -> Option<TicketView> {
        self.tickets
            .contains_key(id)
            .then(|| self.ticket_view(id, now, true))
    }

    /// Leases matching `filter`, oldest first.
    pub fn list(&self, filter: &LeaseFilter, now: Timestamp) -> Vec<Lease> {
        let mut out: Vec<Lease> = self
            .leases
            .values()
            .filter(|l| filter.matches(l, now))
            .map(|l| with_state_at(l, now))
            .collect();
        out.sort_by_key(|a| (a.acquired_at, a.id));
        out
    }

    pub fn resource_info(&self, resource: &ResourceName, now: Timestamp) -> ResourceInfo {
        let state = self.resources.get(resource);
        ResourceInfo {
            resource: resource.clone(),
            holder: state
                .and_then(|s| s.holder)
                .map(|id| with_state_at(&self.leases[&id], now)),
            queue: state
                .and_then(|s| s.queue.as_ref())
                .map(|q| {
                    q.ordered(&self.tickets, &self.aging, now)
                        .iter()
                        .map(|id| self.ticket_view(id, now, false))
                        .collect()
                })
                .unwrap_or_default(),
            last_fencing_token: state.map_or(0, |s| s.last_token),
        }
    }

    /// Every non-empty queue, deepest first.
    pub fn queues(&self, now: Timestamp) -> Vec<QueueSummary> {
        let mut out: Vec<QueueSummary> = self
            .resources
            .iter()
            .filter_map(|(r, s)| s.queue.as_ref().map(|q| (r, q)))
            .map(|(r, q)| {
                let mut by_priority = BTreeMap::new();
                let mut oldest = now;
                for id in q.ids() {
                    let t = &self.tickets[&id];
                    *by_priority.entry(t.priority).or_insert(0) += 1;
                    oldest = oldest.min(t.enqueued_at);
                }
                QueueSummary {
                    resource: r.clone(),
                    depth: q.len(),
                    by_priority,
                    oldest_wait: now.since(oldest),
                }
            })
            .collect();
        out.sort_by(|a, b| {
            b.depth
                .cmp(&a.depth)
                .then_with(|| a.resource.cmp(&b.resource))
        });
        out
    }

    /// The last fencing token minted for `resource` (0 if never granted).
    pub fn last_fencing_token(&self, resource: &str) -> u64 {
        self.resources.get(resource).map_or(0, |s| s.last_token)
    }

    pub(super) fn ticket_view(
        &self,
        id: &TicketId,
        now: Timestamp,
        with_lease_id: bool,
    ) -> TicketView {
        let t = &self.tickets[id];
        let position = t
            .resources
            .iter()
            .map(|r| {
                let q = self.resources[r]
                    .queue
                    .as_ref()
                    .expect("a queued ticket's resource has a queue");
                let key = order_key(t, &self.aging, now);
                let ahead = q.count_ahead(key, &self.tickets, &self.aging, now);
                (r.clone(), ahead as u32 + 1)
            })
            .collect();
        TicketView {
            id: t.id,
            owner: t.owner.clone(),
            resources: t.resources.clone(),
            priority: t.priority,
            effective_priority: self.aging.effective(t.priority, t.enqueued_at, now),
            enqueued_at: t.enqueued_at,
            deadline: t.deadline,
            detached: t.detached,
            position,
            lease_id: with_lease_id.then_some(t.lease_id),
        }
    }
}

fn with_state_at(lease: &Lease, now: Timestamp) -> Lease {
    let mut l = lease.clone();
    if l.is_due(now) {
        l.state = LeaseState::Expired;
    }
    l
}
