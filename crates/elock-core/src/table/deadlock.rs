//! Deadlocks: the wait-for graph of owners, prevention at enqueue, detection and resolution.
//!
//! An owner W waiting (a ticket) for a resource has an edge to the resource's holder and to the
//! owner of the ticket immediately ahead of it in that resource's queue (all-or-none grants mean
//! a ticket also waits for the ones ahead of it; the chain of "immediately ahead" edges reaches
//! every ticket further ahead). A cycle is a deadlock. Everything is visited in a fixed order
//! (owners sorted, tickets by sequence) so that every store picks the same victims.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::event::{Event, EventType};
use crate::model::{Cycle, CycleEdge, Owner, Priority, Reentry, ResourceName, TicketId, Timestamp};

use super::operations::CancelReason;
use super::queue::order_key;
use super::LockTable;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// Which waiter of a cycle is cancelled (`resolution-policy`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResolutionPolicy {
    /// The lowest base priority; among equals, the youngest ticket.
    #[default]
    LowestPriority,
    /// The most recently enqueued ticket.
    Youngest,
    /// The longest-waiting ticket.
    Oldest,
    /// The owner holding the fewest resources; among equals, the youngest ticket.
    FewestLocks,
}

impl FromStr for ResolutionPolicy {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "lowest_priority" => Ok(Self::LowestPriority),
            "youngest" => Ok(Self::Youngest),
            "oldest" => Ok(Self::Oldest),
            "fewest_locks" => Ok(Self::FewestLocks),
            _ => Err(Error::invalid(
                "resolution-policy",
                format!("resolution-policy {s:?} is not one of lowest_priority, youngest, oldest, fewest_locks"),
            )),
        }
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The request that would have closed the cycle was refused.
    Prevented,
    /// A waiter of the cycle was cancelled.
    VictimCancelled,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
/// One deadlock, as kept in the history and served by GET /api/v1/deadlocks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadlockRecord {
    pub detected_at: Timestamp,
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<CycleEdge>))]
    pub cycle: Cycle,
    pub resolution: Resolution,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim: Option<Owner>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub victim_ticket: Option<TicketId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<ResolutionPolicy>,
}

/// An edge of the wait-for graph: a ticket waits, on `resource`, for `blocker` (the holder, or
/// the owner of the ticket just ahead in the queue).
#[derive(Clone, Debug)]
struct Edge {
    ticket: TicketId,
    resource: ResourceName,
    blocker: Owner,
}

impl LockTable {
    /// The edges out of `owner`: for each of its tickets (oldest first), each resource's holder
    /// and the owner of the ticket just ahead in that resource's queue.
    fn edges_of(&self, owner: &Owner, now: Timestamp) -> Vec<Edge> {
        let Some(waits) = self.waiting.get(owner) else {
            return Vec::new();
        };
        let mut tickets: Vec<_> = waits.iter().map(|id| &self.tickets[id]).collect();
        tickets.sort_by_key(|t| t.seq);
        let mut edges = Vec::new();
        for t in tickets {
            let key = order_key(t, &self.aging, now);
            // A ticket that refused re-entry waits for another holder of the same name, which
            // will release: not an edge of the wait-for graph.
            let counts = |blocker: &Owner| t.reentry == Reentry::Allow || blocker != owner;
            for r in &t.resources {
                let s = &self.resources[r];
                if let Some(h) = s.holder {
                    let blocker = &self.leases[&h].owner;
                    if counts(blocker) {
                        edges.push(Edge {
                            ticket: t.id,
                            resource: r.clone(),
                            blocker: blocker.clone(),
                        });
                    }
                }
                if let Some(ahead) = s
                    .queue
                    .as_ref()
                    .and_then(|q| q.ahead_of(key, &self.tickets, &self.aging, now))
                {
                    let blocker = &self.tickets[&ahead].owner;
                    if counts(blocker) {
                        edges.push(Edge {
                            ticket: t.id,
                            resource: r.clone(),
                            blocker: blocker.clone(),
                        });
                    }
                }
            }
        }
        edges
    }

    /// The cycle that a new ticket of `owner` on `resources` would close, if any.
    pub(super) fn cycle_if_enqueued(
        &self,
        owner: &Owner,
        ticket_id: TicketId,
        resources: &[ResourceName],
        priority: Priority,
        reentry: Reentry,
        now: Timestamp,
    ) -> Option<Cycle> {
        // Nobody can wait for an owner that holds nothing and waits for nothing.
        if !self.holding.contains_key(owner) && !self.waiting.contains_key(owner) {
            return None;
        }
        let key = (3 - priority.level(), self.next_seq);
        let mut first: Vec<Edge> = Vec::new();
        for r in resources {
            if let Some(s) = self.resources.get(r) {
                if let Some(h) = s.holder {
                    first.push(Edge {
                        ticket: ticket_id,
                        resource: r.clone(),
                        blocker: self.leases[&h].owner.clone(),
                    });
                }
                if let Some(ahead) = s
                    .queue
                    .as_ref()
                    .and_then(|q| q.ahead_of(key, &self.tickets, &self.aging, now))
                {
                    first.push(Edge {
                        ticket: ticket_id,
                        resource: r.clone(),
                        blocker: self.tickets[&ahead].owner.clone(),
                    });
                }
            }
        }
        // Breadth-first from the new ticket's blockers; `came_from` rebuilds the path.
        let mut came_from: BTreeMap<Owner, (Owner, Edge)> = BTreeMap::new();
        let mut frontier: Vec<Owner> = Vec::new();
        // Refusing re-entry, the request waits for other holders of its own name: no edge.
        if reentry == Reentry::Refuse {
            first.retain(|e| e.blocker != *owner);
        }
        for e in first {
            if e.blocker == *owner {
                return Some(vec![edge(owner, &e)]);
            }
            if !came_from.contains_key(&e.blocker) {
                came_from.insert(e.blocker.clone(), (owner.clone(), e.clone()));
                frontier.push(e.blocker.clone());
            }
        }
        let mut i = 0;
        while i < frontier.len() {
            let from = frontier[i].clone();
            i += 1;
            for e in self.edges_of(&from, now) {
                if e.blocker == *owner {
                    let mut path = vec![edge(&from, &e)];
                    let mut at = from.clone();
                    while at != *owner {
                        let (prev, via) = &came_from[&at];
                        path.push(edge(prev, via));
                        at = prev.clone();
                    }
                    path.reverse();
                    return Some(path);
                }
                if !came_from.contains_key(&e.blocker) && e.blocker != *owner {
                    came_from.insert(e.blocker.clone(), (from.clone(), e.clone()));
                    frontier.push(e.blocker.clone());
                }
            }
        }
        None
    }

    /// Every cycle found by a depth-first search of the wait-for graph (each owner in at most one).
    pub fn find_deadlocks(&self, now: Timestamp) -> Vec<Cycle> {
        // Owners in name order, so that every store finds the same cycles.
        let waiting: std::collections::BTreeSet<&Owner> = self.waiting.keys().collect();
        crate::model::find_cycles(waiting.into_iter().cloned(), |o| {
            self.edges_of(o, now).iter().map(|e| edge(o, e)).collect()
        })
    }

    /// Finds cycles and cancels one waiter of each, chosen by `policy`, until none is left.
    pub fn resolve_deadlocks(
        &mut self,
        policy: ResolutionPolicy,
        now: Timestamp,
    ) -> Vec<DeadlockRecord> {
        let now = self.advance(now);
        let mut records = Vec::new();
        // Each round cancels a ticket, so this ends; the bound is a guard, not a limit in practice.
        for _ in 0..=self.tickets.len() {
            let Some(cycle) = self.find_deadlocks(now).into_iter().next() else {
                break;
            };
            let victim = self.choose_victim(&cycle, policy);
            let (owner, ticket) = (
                victim.waiter.clone(),
                victim.ticket_id.expect("cycle edges come from tickets"),
            );
            let mut event = Event::new(EventType::DeadlockDetected, now);
            event.resources = cycle.iter().map(|e| e.resource.clone()).collect();
            event.owner = Some(owner.clone());
            event.ticket_id = Some(ticket);
            event.cycle = Some(cycle.clone());
            event.reason = Some("victim_cancelled".into());
            self.events.push(event);
            self.cancel_ticket(ticket, CancelReason::Deadlock(cycle.clone()), now)
                .expect("a ticket on a cycle is queued");
            records.push(DeadlockRecord {
                detected_at: now,
                cycle,
                resolution: Resolution::VictimCancelled,
                victim: Some(owner),
                victim_ticket: Some(ticket),
                policy: Some(policy),
            });
        }
        records
    }

    fn choose_victim<'c>(&self, cycle: &'c Cycle, policy: ResolutionPolicy) -> &'c CycleEdge {
        let facts: Vec<VictimFacts<u64>> = cycle
            .iter()
            .map(|e| {
                let ticket = &self.tickets[&e.ticket_id.expect("ticket edge")];
                VictimFacts {
                    priority: ticket.priority,
                    held: self.holding.get(&e.waiter).copied().unwrap_or(0) as usize,
                    youth: ticket.seq,
                }
            })
            .collect();
        &cycle[policy
            .victim(&facts)
            .expect("a cycle has at least one edge")]
    }
}

/// What the choice of a deadlock victim weighs, for one waiter of a cycle. `youth` orders the
/// tickets by when they were enqueued: the larger, the younger (the table's sequence number; the
/// Redis store's enqueue time and id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VictimFacts<Y> {
    pub priority: Priority,
    /// Resources the waiter's owner holds.
    pub held: usize,
    pub youth: Y,
}

impl ResolutionPolicy {
    /// The index of the waiter to cancel among `candidates` (`None` when there are none). The
    /// one definition of the victim order: the table and the Redis store's resolution across
    /// shards both call it.
    pub fn victim<Y: Ord>(self, candidates: &[VictimFacts<Y>]) -> Option<usize> {
        (0..candidates.len()).min_by(|&a, &b| self.rank(&candidates[a], &candidates[b]))
    }

    /// `Less` when `a` is the better victim.
    fn rank<Y: Ord>(self, a: &VictimFacts<Y>, b: &VictimFacts<Y>) -> std::cmp::Ordering {
        let younger_first = b.youth.cmp(&a.youth);
        match self {
            ResolutionPolicy::LowestPriority => a.priority.cmp(&b.priority).then(younger_first),
            ResolutionPolicy::Youngest => younger_first,
            ResolutionPolicy::Oldest => younger_first.reverse(),
            ResolutionPolicy::FewestLocks => a.held.cmp(&b.held).then(younger_first),
        }
    }
}

fn edge(waiter: &Owner, e: &Edge) -> CycleEdge {
    CycleEdge {
        waiter: waiter.clone(),
        ticket_id: Some(e.ticket),
        resource: e.resource.clone(),
        blocker: e.blocker.clone(),
    }
}
