//! What durable stores need from the table: which records an operation changed, a snapshot of
//! every record, and a table rebuilt from records (checked for consistency).

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::model::{Lease, LeaseId, ResourceName, Ticket, TicketId, Timestamp};

use super::{LockTable, TableConfig};

/// The records touched since the last [`LockTable::take_changes`]; a durable store writes each
/// one's current value (or deletes it when gone).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChangeSet {
    pub leases: Vec<LeaseId>,
    pub tickets: Vec<TicketId>,
    /// Resources whose fencing counter moved.
    pub fences: Vec<ResourceName>,
}

impl ChangeSet {
    pub fn is_empty(&self) -> bool {
        self.leases.is_empty() && self.tickets.is_empty() && self.fences.is_empty()
    }
}

/// Every record of a table: what a durable store keeps, and what `export` writes.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub leases: Vec<Lease>,
    pub tickets: Vec<Ticket>,
    /// (resource, last fencing token minted).
    pub fences: Vec<(ResourceName, u64)>,
}

/// What an import took and what it left, with the reason for each record left.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ImportReport {
    pub leases: usize,
    pub tickets: usize,
    pub skipped: Vec<Skipped>,
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

impl LockTable {
    /// Adds what does not conflict with the current state: leases whose id is new and whose
    /// resources are free (ids and fencing tokens kept), then tickets whose id is new (in their
    /// original order, behind those already queued). Fencing counters only move up. Like every
    /// transition it records its events (`lock.acquired`, `queue.enqueued`, reason `imported`).
    /// Leases already past their deadline expire at once, like any other.
    ///
    /// A snapshot with any record a request could not have made ([`Snapshot::validate`]) is
    /// refused whole: nothing is added.
    pub fn import(&mut self, mut snapshot: Snapshot, now: Timestamp) -> Result<ImportReport> {
        snapshot.validate(&self.config, now.max(self.last_now))?;
        let now = self.advance(now);
        let mut report = ImportReport::default();
        for (r, token) in snapshot.fences {
            let s = self.resources.entry(r.clone()).or_default();
            if token > s.last_token {
                s.last_token = token;
                if let Some(c) = &mut self.changes {
                    c.fences.push(r);
                }
            }
        }
        snapshot.leases.sort_by_key(|l| (l.acquired_at, l.id));
        for mut lease in snapshot.leases {
            let conflict = if self.leases.contains_key(&lease.id) {
                Some("a lease with this id exists".to_string())
            } else {
                lease.resources.iter().find_map(|h| {
                    self.resources
                        .get(&h.resource)
                        .and_then(|s| s.holder)
                        .map(|holder| {
                            format!("{} is held by {}", h.resource, self.leases[&holder].owner)
                        })
                })
            };
            if let Some(reason) = conflict {
                report.skipped.push(Skipped {
                    id: lease.id.to_string(),
                    reason,
                });
                continue;
            }
            lease.state = crate::model::LeaseState::Held;
            for h in &lease.resources {
                let s = self.resources.entry(h.resource.clone()).or_default();
                s.holder = Some(lease.id);
                if h.fencing_token > s.last_token {
                    s.last_token = h.fencing_token;
                }
                self.stalled.remove(&h.resource);
                if let Some(c) = &mut self.changes {
                    c.fences.push(h.resource.clone());
                }
            }
            if let Some(e) = lease.expires_at {
                self.expiries.insert((e, lease.id));
            }
            *self.holding.entry(lease.owner.clone()).or_default() += lease.resources.len() as u32;
            if let Some(c) = &mut self.changes {
                c.leases.push(lease.id);
            }
            self.events.push(
                Event::for_lease(EventType::LockAcquired, now, &lease, true)
                    .with_reason("imported"),
            );
            self.leases.insert(lease.id, Box::new(lease));
            report.leases += 1;
        }
        snapshot.tickets.sort_by_key(|t| t.seq);
        for mut ticket in snapshot.tickets {
            if self.tickets.contains_key(&ticket.id) || self.leases.contains_key(&ticket.lease_id) {
                report.skipped.push(Skipped {
                    id: ticket.id.to_string(),
                    reason: "a ticket or lease with this id exists".into(),
                });
                continue;
            }
            ticket.seq = self.next_seq;
            self.next_seq += 1;
            self.events.push(
                Event::for_ticket(EventType::QueueEnqueued, now, &ticket).with_reason("imported"),
            );
            self.insert_ticket(ticket, now);
            report.tickets += 1;
        }
        // Expire what was already due, and hand off what imported tickets can have.
        self.expire_due_at(now);
        let stalled: Vec<ResourceName> = self.stalled.iter().cloned().collect();
        self.hand_off(stalled, now);
        Ok(report)
    }

    /// After a restart: removes the tickets of waiters that were connected to the server (not
    /// detached). Their clients' connections died with the server, so nobody would take a grant
    /// made to them, and the resource would stay held for the whole ttl. Detached tickets stay:
    /// their owners poll for them. Returns how many were removed (reason `client_gone`).
    pub fn drop_attached_tickets(&mut self, now: Timestamp) -> usize {
        let now = now.max(self.last_now);
        let mut attached: Vec<(u64, TicketId)> = self
            .tickets
            .values()
            .filter(|t| !t.detached)
            .map(|t| (t.seq, t.id))
            .collect();
        attached.sort_unstable();
        // All of them leave before anything is handed off: expiring what fell due while the
        // server was down must not hand a resource to a ticket that is about to go.
        let mut touched = Vec::new();
        for (_, id) in &attached {
            let ticket = self.remove_ticket(*id);
            // Attached tickets are not written any more; earlier versions wrote them, so
            // their records are deleted here once.
            if let Some(c) = &mut self.changes {
                c.tickets.push(*id);
            }
            self.events.push(
                Event::for_ticket(EventType::QueueCancelled, now, &ticket)
                    .with_reason(super::CancelReason::ClientGone.name()),
            );
            touched.extend(ticket.resources);
        }
        let now = self.advance(now);
        // A free resource whose first waiters were attached (and, since they are not written,
        // were not even restored) now has a detached ticket at its head: it is handed the
        // resource at once.
        touched.extend(
            self.resources
                .iter()
                .filter(|(_, s)| s.holder.is_none() && s.queue.is_some())
                .map(|(r, _)| r.clone()),
        );
        touched.sort();
        touched.dedup();
        self.hand_off(touched, now);
        // The next aging step from what is left (a table restored with the attached tickets
        // and one restored without them must agree from here on).
        self.aging_due = None;
        let stalled: Vec<ResourceName> = self.stalled.iter().cloned().collect();
        for r in &stalled {
            self.refresh_stalled(r, now);
        }
        attached.len()
    }

    /// From now on, record which records each operation touches.
    pub fn track_changes(&mut self) {
        self.changes.get_or_insert_with(ChangeSet::default);
    }

    pub fn take_changes(&mut self) -> ChangeSet {
        match &mut self.changes {
            Some(c) => std::mem::take(c),
            None => ChangeSet::default(),
        }
    }

    pub fn lease_record(&self, id: &LeaseId) -> Option<&Lease> {
        self.leases.get(id).map(|l| &**l)
    }

    pub fn ticket_record(&self, id: &TicketId) -> Option<&Ticket> {
        self.tickets.get(id)
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut s = Snapshot {
            leases: self.leases.values().map(|l| (**l).clone()).collect(),
            tickets: self.tickets.values().cloned().collect(),
            fences: self
                .resources
                .iter()
                .filter(|(_, s)| s.last_token > 0)
                .map(|(r, s)| (r.clone(), s.last_token))
                .collect(),
        };
        s.leases.sort_by_key(|l| (l.acquired_at, l.id));
        s.tickets.sort_by_key(|t| t.seq);
        s.fences.sort();
        s
    }

    /// Rebuilds a table from its records. Inconsistent records (a resource held twice, a ticket
    /// id reused) are an error naming the record, never a silently different state.
    pub fn restore(config: TableConfig, mut snapshot: Snapshot) -> Result<LockTable> {
        let mut table = LockTable::new(config);
        // Sized once: a million leases would otherwise rehash every map some twenty times.
        table
            .resources
            .reserve(snapshot.fences.len().max(snapshot.leases.len()));
        table.leases.reserve(snapshot.leases.len());
        for (r, token) in snapshot.fences {
            table.resources.entry(r).or_default().last_token = token;
        }
        // Boxed before sorting: a sort moves each element some twenty times, and a box is
        // 8 bytes where a lease is a few hundred.
        let mut leases: Vec<Box<Lease>> = snapshot.leases.into_iter().map(Box::new).collect();
        leases.sort_unstable_by_key(|l| (l.acquired_at, l.id));
        let mut now = Timestamp::default();
        for lease in leases {
            now = now.max(lease.acquired_at);
            for h in &lease.resources {
                // Most resources are there already (their fencing counters came first).
                let s = match table.resources.get_mut(&h.resource) {
                    Some(s) => s,
                    None => table.resources.entry(h.resource.clone()).or_default(),
                };
                if let Some(other) = s.holder {
                    return Err(Error::Storage(format!(
                        "corrupt store: resource {:?} is held by both lease {other} and lease {}",
                        h.resource, lease.id
                    )));
                }
                s.holder = Some(lease.id);
                s.last_token = s.last_token.max(h.fencing_token);
            }
            if let Some(e) = lease.expires_at {
                table.expiries.insert((e, lease.id));
            }
            match table.holding.get_mut(&lease.owner) {
                Some(n) => *n += lease.resources.len() as u32,
                None => {
                    table
                        .holding
                        .insert(lease.owner.clone(), lease.resources.len() as u32);
                }
            }
            table.leases.insert(lease.id, lease);
        }
        snapshot.tickets.sort_by_key(|t| t.seq);
        for ticket in snapshot.tickets {
            if table.tickets.contains_key(&ticket.id) {
                return Err(Error::Storage(format!(
                    "corrupt store: ticket {} appears twice",
                    ticket.id
                )));
            }
            now = now.max(ticket.enqueued_at);
            table.next_seq = table.next_seq.max(ticket.seq + 1);
            table.insert_ticket(ticket, now);
        }
        table.last_now = now;
        Ok(table)
    }
}
