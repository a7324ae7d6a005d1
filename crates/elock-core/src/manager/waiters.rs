//! Attached waiters: one slot per queued ticket whose caller is blocked in `acquire`.
//!
//! A slot is registered before the request reaches the store, so a grant can never arrive before
//! someone listens for it. The store's ordered event stream fills slots; a slot whose caller went
//! away is simply gone, and the caller's guard cancels the ticket (or releases what was granted).

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::event::{Event, EventType};
use crate::model::{Cycle, Lease, TicketId};

#[derive(Debug)]
pub enum WaitOutcome {
    Granted(Lease),
    TimedOut,
    Deadlock(Cycle),
    Cancelled(String),
}

#[derive(Default)]
pub struct Waiters {
    slots: Mutex<HashMap<TicketId, oneshot::Sender<WaitOutcome>>>,
}

impl Waiters {
    pub fn register(&self, ticket: TicketId) -> oneshot::Receiver<WaitOutcome> {
        let (tx, rx) = oneshot::channel();
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(ticket, tx);
        rx
    }

    pub fn remove(&self, ticket: &TicketId) {
        self.slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(ticket);
    }

    /// Hands the outcome an event carries to the ticket's waiter, if one is registered.
    pub fn route(&self, e: &Event) {
        let outcome = match e.kind {
            EventType::QueueGranted => match &e.lease {
                Some(lease) => WaitOutcome::Granted((**lease).clone()),
                None => return,
            },
            EventType::QueueTimeout => WaitOutcome::TimedOut,
            EventType::QueueCancelled => match (&e.cycle, e.reason.as_deref()) {
                (Some(cycle), _) => WaitOutcome::Deadlock(cycle.clone()),
                (None, reason) => WaitOutcome::Cancelled(reason.unwrap_or("cancelled").to_string()),
            },
            _ => return,
        };
        let Some(ticket) = e.ticket_id else { return };
        let slot = self
            .slots
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ticket);
        if let Some(tx) = slot {
            let _ = tx.send(outcome);
        }
    }
}
