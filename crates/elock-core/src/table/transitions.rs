//! The table's transitions: acquire, release, renew, cancel, force-release, expiry, handoff.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::model::{
    format_duration, HeldResource, Lease, LeaseId, LeaseState, Owner, Reentry, ResourceName,
    Ticket, TicketId, TicketView, Timestamp, MAX_FENCING_TOKEN,
};

use super::operations::{AcquireRequest, Acquired, CancelReason, WaitMode};
use super::queue::Queue;
use super::{LockTable, MAX_RESOURCES_PER_REQUEST};

impl LockTable {
    /// Moves the table's clock to `now` (never backwards) and applies everything due by then.
    pub(super) fn advance(&mut self, now: Timestamp) -> Timestamp {
        let now = now.max(self.last_now);
        self.last_now = now;
        if self.next_deadline().is_some_and(|d| d <= now) {
            self.expire_due_at(now);
        }
        now
    }

    pub fn acquire(&mut self, req: AcquireRequest, now: Timestamp) -> Result<Acquired> {
        let now = self.advance(now);
        let resources = self.validate_acquire(&req)?;

        // A retried request (same ids) gets the answer it got the first time.
        if let Some(lease) = self.leases.get(&req.lease_id) {
            if lease.owner != req.owner {
                return Err(Error::invalid(
                    "lease_id",
                    format!("lease id {} is already in use", req.lease_id),
                ));
            }
            return Ok(Acquired::Granted {
                lease: (**lease).clone(),
                reentrant: false,
            });
        }
        if self.tickets.contains_key(&req.ticket_id) {
            return Ok(Acquired::Queued {
                ticket: self.ticket_view(&req.ticket_id, now, true),
            });
        }

        // Re-entry: the owner already holds every requested resource in one lease. That lease
        // must be the holder of the first resource: O(resources), however much the owner holds.
        // A request that refuses re-entry is another holder under the same name.
        if let Some(lease) = (req.reentry == Reentry::Allow)
            .then(|| self.resources.get(&resources[0]))
            .flatten()
            .and_then(|s| s.holder)
            .map(|id| &self.leases[&id])
            .filter(|l| l.owner == req.owner && resources.iter().all(|r| l.holds(r.as_str())))
        {
            return Ok(Acquired::Granted {
                lease: (**lease).clone(),
                reentrant: true,
            });
        }

        self.check_fencing(&resources)?;
        if self.can_grant_now(&resources, &req, now) {
            let lease = self.grant(
                req.lease_id,
                req.owner,
                &resources,
                req.priority,
                req.ttl,
                req.metadata,
                now,
            );
            self.events
                .push(Event::for_lease(EventType::LockAcquired, now, &lease, true));
            return Ok(Acquired::Granted {
                lease,
                reentrant: false,
            });
        }

        let WaitMode::Queue { deadline, detached } = req.wait else {
            return Err(self.locked_error(&resources));
        };
        if deadline.is_some_and(|d| d <= now) {
            return Err(self.locked_error(&resources));
        }
        for r in &resources {
            let len = self.resources.get(r).map_or(0, |s| s.queue_len());
            let max = req
                .queue_limits
                .get(r)
                .map_or(self.config.max_queue_size, |n| {
                    (*n).min(self.config.max_queue_size)
                });
            if len >= max {
                return Err(Error::QueueFull {
                    resource: r.clone(),
                    max,
                });
            }
        }
        if self.config.deadlock_prevention {
            if let Some(cycle) = self.cycle_if_enqueued(
                &req.owner,
                req.ticket_id,
                &resources,
                req.priority,
                req.reentry,
                now,
            ) {
                return Err(Error::Deadlock { cycle });
            }
        }
        let ticket = Ticket {
            id: req.ticket_id,
            lease_id: req.lease_id,
            owner: req.owner,
            resources,
            priority: req.priority,
            enqueued_at: now,
            deadline,
            detached,
            seq: self.next_seq,
            ttl: req.ttl,
            metadata: req.metadata,
            reentry: req.reentry,
        };
        self.next_seq += 1;
        self.events
            .push(Event::for_ticket(EventType::QueueEnqueued, now, &ticket));
        let id = ticket.id;
        self.insert_ticket(ticket, now);
        Ok(Acquired::Queued {
            ticket: self.ticket_view(&id, now, true),
        })
    }

    fn validate_acquire(&self, req: &AcquireRequest) -> Result<Vec<ResourceName>> {
        if req.resources.is_empty() {
            return Err(Error::invalid(
                "resources",
                "at least one resource is required",
            ));
        }
        let mut resources: Vec<ResourceName> = Vec::with_capacity(req.resources.len());
        for r in &req.resources {
            if !resources.contains(r) {
                resources.push(r.clone());
            }
        }
        if resources.len() > MAX_RESOURCES_PER_REQUEST {
            return Err(Error::invalid(
                "resources",
                format!(
                    "{} resources requested; at most {MAX_RESOURCES_PER_REQUEST} per request",
                    resources.len()
                ),
            ));
        }
        self.validate_ttl(req.ttl)?;
        Ok(resources)
    }

    fn validate_ttl(&self, ttl: Option<Duration>) -> Result<()> {
        self.config.check_ttl("ttl", ttl)
    }

    /// A resource whose fencing counter reached [`MAX_FENCING_TOKEN`] can never be granted again.
    fn check_fencing(&self, resources: &[ResourceName]) -> Result<()> {
        match resources
            .iter()
            .enumerate()
            .find(|(_, r)| self.fencing_exhausted(r))
        {
            Some((i, r)) => Err(Error::invalid(
                format!("resources[{i}]"),
                format!(
                    "resources[{i}] {r:?} has minted its last fencing token ({MAX_FENCING_TOKEN}) and cannot be granted again: use another resource name"
                ),
            )),
            None => Ok(()),
        }
    }

    fn fencing_exhausted(&self, r: &ResourceName) -> bool {
        self.resources
            .get(r)
            .is_some_and(|s| s.last_token >= MAX_FENCING_TOKEN)
    }

    /// Granted at once when every resource is free and nobody queued would come first.
    fn can_grant_now(
        &self,
        resources: &[ResourceName],
        req: &AcquireRequest,
        now: Timestamp,
    ) -> bool {
        resources.iter().all(|r| match self.resources.get(r) {
            None => true,
            Some(s) => {
                s.holder.is_none()
                    && s.queue
                        .as_ref()
                        .is_none_or(|q| q.would_lead(req.priority, &self.tickets, &self.aging, now))
            }
        })
    }

    fn locked_error(&self, resources: &[ResourceName]) -> Error {
        let held = resources.iter().find_map(|r| {
            self.resources
                .get(r)
                .and_then(|s| s.holder)
                .map(|id| (r, &self.leases[&id]))
        });
        match held {
            Some((r, lease)) => Error::Locked {
                resource: r.clone(),
                holder: Some(lease.clone()),
            },
            None => Error::Locked {
                resource: resources[0].clone(),
                holder: None,
            },
        }
    }

    /// Creates and records a lease, minting one fencing token per resource.
    #[allow(clippy::too_many_arguments)]
    fn grant(
        &mut self,
        id: LeaseId,
        owner: Owner,
        resources: &[ResourceName],
        priority: crate::model::Priority,
        ttl: Option<Duration>,
        metadata: Option<crate::model::Metadata>,
        now: Timestamp,
    ) -> Lease {
        let mut held = Vec::with_capacity(resources.len());
        for r in resources {
            let state = self.resources.entry(r.clone()).or_default();
            debug_assert!(state.holder.is_none(), "granting a held resource");
            debug_assert!(
                state.last_token < MAX_FENCING_TOKEN,
                "checked by the callers"
            );
            state.last_token += 1;
            state.holder = Some(id);
            held.push(HeldResource {
                resource: r.clone(),
                fencing_token: state.last_token,
            });
            self.stalled.remove(r);
            if let Some(c) = &mut self.changes {
                c.fences.push(r.clone());
            }
        }
        let expires_at = ttl.map(|d| now.plus(d));
        let lease = Lease {
            id,
            owner,
            resources: held,
            priority,
            acquired_at: now,
            expires_at,
            ttl,
            metadata,
            state: LeaseState::Held,
        };
        if let Some(e) = expires_at {
            self.expiries.insert((e, id));
        }
        *self.holding.entry(lease.owner.clone()).or_default() += lease.resources.len() as u32;
        if let Some(c) = &mut self.changes {
            c.leases.push(id);
        }
        self.leases.insert(id, Box::new(lease.clone()));
        lease
    }

    pub(super) fn insert_ticket(&mut self, ticket: Ticket, now: Timestamp) {
        for r in &ticket.resources {
            self.resources
                .entry(r.clone())
                .or_default()
                .queue
                .get_or_insert_with(Box::<Queue>::default)
                .push(ticket.priority, ticket.id);
        }
        if let Some(d) = ticket.deadline {
            self.deadlines.insert((d, ticket.id));
        }
        self.waiting
            .entry(ticket.owner.clone())
            .or_default()
            .push(ticket.id);
        // An attached waiter's ticket is never written: its client is connected to this server
        // and dies with it, so a restart has nothing to restore (and a hot lock's handoff costs
        // one commit, the release's, not two). A detached ticket must survive.
        if let (Some(c), true) = (&mut self.changes, ticket.detached) {
            c.tickets.push(ticket.id);
        }
        let resources = ticket.resources.clone();
        self.tickets.insert(ticket.id, ticket);
        for r in &resources {
            self.refresh_stalled(r, now);
        }
    }

    fn remove_lease(&mut self, id: LeaseId, state: LeaseState) -> Lease {
        let mut lease = *self.leases.remove(&id).expect("lease present");
        for h in &lease.resources {
            if let Some(s) = self.resources.get_mut(&h.resource) {
                if s.holder == Some(id) {
                    s.holder = None;
                }
            }
        }
        if let Some(e) = lease.expires_at {
            self.expiries.remove(&(e, id));
        }
        if let Some(n) = self.holding.get_mut(&lease.owner) {
            *n -= lease.resources.len() as u32;
            if *n == 0 {
                self.holding.remove(&lease.owner);
            }
        }
        if let Some(c) = &mut self.changes {
            c.leases.push(id);
        }
        lease.state = state;
        lease
    }

    pub(super) fn remove_ticket(&mut self, id: TicketId) -> Ticket {
        let ticket = self.tickets.remove(&id).expect("ticket present");
        for r in &ticket.resources {
            if let Some(s) = self.resources.get_mut(r) {
                if let Some(q) = &mut s.queue {
                    q.remove(ticket.priority, id);
                    if q.is_empty() {
                        s.queue = None;
                    }
                }
            }
        }
        if let Some(d) = ticket.deadline {
            self.deadlines.remove(&(d, id));
        }
        if let Some(tickets) = self.waiting.get_mut(&ticket.owner) {
            tickets.retain(|t| *t != id);
            if tickets.is_empty() {
                self.waiting.remove(&ticket.owner);
            }
        }
        if let (Some(c), true) = (&mut self.changes, ticket.detached) {
            c.tickets.push(id);
        }
        ticket
    }

    /// Keeps `stalled` exact for `r`: free, with waiters whose head waits for something else.
    pub(super) fn refresh_stalled(&mut self, r: &ResourceName, now: Timestamp) {
        let Some(s) = self.resources.get(r) else {
            self.stalled.remove(r);
            return;
        };
        match (&s.queue, s.holder) {
            (Some(q), None) => {
                let step = q.next_aging_step(&self.tickets, &self.aging, now);
                self.stalled.insert(r.clone());
                if let Some(step) = step {
                    self.aging_due = Some(self.aging_due.map_or(step, |d| d.min(step)));
                }
            }
            _ => {
                self.stalled.remove(r);
            }
        }
    }

    /// Handoff: for each resource, grant its head ticket if that ticket can have all it asked for.
    /// Granting only takes resources, so one pass suffices.
    pub(super) fn hand_off(&mut self, worklist: Vec<ResourceName>, now: Timestamp) {
        for r in worklist {
            let head = match self.resources.get(&r) {
                Some(s) if s.holder.is_none() => s
                    .queue
                    .as_ref()
                    .and_then(|q| q.head(&self.tickets, &self.aging, now)),
                _ => None,
            };
            if let Some(head) = head {
                if self.tickets[&head]
                    .resources
                    .iter()
                    .any(|r| self.fencing_exhausted(r))
                {
                    // Never granted: refuse it, and look at the queue's next head.
                    let ticket = self.remove_ticket(head);
                    self.events.push(
                        Event::for_ticket(EventType::QueueCancelled, now, &ticket)
                            .with_reason(CancelReason::FencingExhausted.name()),
                    );
                    let mut again = vec![r.clone()];
                    again.extend(ticket.resources.into_iter().filter(|x| *x != r));
                    self.hand_off(again, now);
                    continue;
                } else if self.is_grantable(head, now) {
                    self.grant_ticket(head, now);
                }
            }
            self.refresh_stalled(&r, now);
        }
    }

    fn is_grantable(&self, id: TicketId, now: Timestamp) -> bool {
        self.tickets[&id].resources.iter().all(|r| {
            let s = &self.resources[r];
            s.holder.is_none()
                && s.queue
                    .as_ref()
                    .and_then(|q| q.head(&self.tickets, &self.aging, now))
                    == Some(id)
        })
    }

    fn grant_ticket(&mut self, id: TicketId, now: Timestamp) {
        let ticket = self.remove_ticket(id);
        let lease = self.grant(
            ticket.lease_id,
            ticket.owner.clone(),
            &ticket.resources,
            ticket.priority,
            ticket.ttl,
            ticket.metadata.clone(),
            now,
        );
        let mut event = Event::for_lease(EventType::QueueGranted, now, &lease, true);
        event.ticket_id = Some(ticket.id);
        event.waited = Some(now.since(ticket.enqueued_at));
        self.events.push(event);
    }

    pub fn release(&mut self, id: LeaseId, now: Timestamp) -> Result<Lease> {
        let now = self.advance(now);
        if !self.leases.contains_key(&id) {
            return Err(lease_not_found(id));
        }
        let lease = self.remove_lease(id, LeaseState::Released);
        self.events.push(Event::for_lease(
            EventType::LockReleased,
            now,
            &lease,
            false,
        ));
        self.hand_off(lease.resource_names(), now);
        Ok(lease)
    }

    pub fn renew(&mut self, id: LeaseId, ttl: Option<Duration>, now: Timestamp) -> Result<Lease> {
        let now = self.advance(now);
        let Some(lease) = self.leases.get(&id) else {
            return Err(lease_not_found(id));
        };
        let ttl = ttl.or(lease.ttl);
        if ttl.is_some() {
            self.validate_ttl(ttl)?;
        }
        let lease = self.leases.get_mut(&id).expect("checked above");
        if let Some(old) = lease.expires_at {
            self.expiries.remove(&(old, id));
        }
        lease.ttl = ttl;
        lease.expires_at = ttl.map(|d| now.plus(d));
        if let Some(e) = lease.expires_at {
            self.expiries.insert((e, id));
        }
        let lease = (**lease).clone();
        if let Some(c) = &mut self.changes {
            c.leases.push(id);
        }
        self.events
            .push(Event::for_lease(EventType::LockRenewed, now, &lease, false));
        Ok(lease)
    }

    pub fn cancel_ticket(
        &mut self,
        id: TicketId,
        reason: CancelReason,
        now: Timestamp,
    ) -> Result<TicketView> {
        let now = self.advance(now);
        if !self.tickets.contains_key(&id) {
            return Err(Error::not_found(format!(
                "ticket {id} not found (granted, timed out or cancelled)"
            )));
        }
        let view = self.ticket_view(&id, now, true);
        let ticket = self.remove_ticket(id);
        let mut event =
            Event::for_ticket(EventType::QueueCancelled, now, &ticket).with_reason(reason.name());
        if let CancelReason::Deadlock(cycle) = reason {
            event.cycle = Some(cycle);
        }
        self.events.push(event);
        self.hand_off(ticket.resources, now);
        Ok(view)
    }

    pub fn force_release(
        &mut self,
        resource: &ResourceName,
        reason: &str,
        now: Timestamp,
    ) -> Result<Lease> {
        let now = self.advance(now);
        let Some(id) = self.resources.get(resource).and_then(|s| s.holder) else {
            return Err(Error::not_found(format!(
                "resource {resource:?} is not held"
            )));
        };
        let lease = self.remove_lease(id, LeaseState::ForceReleased);
        self.events.push(
            Event::for_lease(EventType::LockForceReleased, now, &lease, false).with_reason(reason),
        );
        self.hand_off(lease.resource_names(), now);
        Ok(lease)
    }

    /// Expires every lease and times out every ticket due at `now`, then hands off. Returns the
    /// leases that expired (cleanup with `expired_only`).
    pub fn expire_due(&mut self, now: Timestamp) -> Vec<Lease> {
        let now = now.max(self.last_now);
        self.last_now = now;
        self.expire_due_at(now)
    }

    pub(super) fn expire_due_at(&mut self, now: Timestamp) -> Vec<Lease> {
        let mut worklist = Vec::new();
        let mut expired = Vec::new();
        while let Some(&(at, id)) = self.expiries.first() {
            if at > now {
                break;
            }
            let lease = self.remove_lease(id, LeaseState::Expired);
            self.events
                .push(Event::for_lease(EventType::LockExpired, now, &lease, false));
            worklist.extend(lease.resource_names());
            expired.push(lease);
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            let ticket = self.remove_ticket(id);
            let mut event = Event::for_ticket(EventType::QueueTimeout, now, &ticket);
            event.reason = Some(format!(
                "not granted within {}",
                format_duration(at.since(ticket.enqueued_at))
            ));
            self.events.push(event);
            worklist.extend(ticket.resources);
        }
        if self.aging_due.is_some_and(|d| d <= now) {
            self.aging_due = None;
            worklist.extend(self.stalled.iter().cloned());
        }
        self.hand_off(worklist, now);
        expired
    }
}

fn lease_not_found(id: LeaseId) -> Error {
    Error::not_found(format!(
        "lease {id} not found (released, expired or never granted)"
    ))
}
