//! Acquires whose outcome is unknown: the store failed (a timeout, a dropped connection) after the
//! request may have reached it. The caller was answered `backend_unavailable`, so it believes it
//! holds nothing; whatever the request may have taken is given back, by the lease and ticket ids
//! it chose, as soon as the store answers again. Without this a grant made just before a timeout
//! would hold its resources for the whole ttl with nobody to release them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::model::{LeaseId, TicketId};

use super::acquire::settle_abandoned;
use super::Inner;

/// How long to wait before asking a store that failed again.
const RETRY_EVERY: Duration = Duration::from_millis(250);

#[derive(Default)]
pub(crate) struct Unsettled {
    pending: Mutex<Vec<(TicketId, LeaseId)>>,
    wake: Notify,
}

impl Unsettled {
    /// Remembers a request whose outcome is unknown; it is settled in the background.
    pub fn add(&self, ticket: TicketId, lease: LeaseId) {
        self.lock().push((ticket, lease));
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(TicketId, LeaseId)>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Cancels the ticket and releases the lease of each unknown outcome, retrying while the store
/// fails. Runs for the manager's lifetime.
pub(super) async fn settle_unknown(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let todo = std::mem::take(&mut *inner.unsettled.lock());
        let mut failed = Vec::new();
        for (ticket, lease) in todo {
            match settle_abandoned(&inner, ticket, lease, true).await {
                Ok(_) => tracing::info!(
                    %lease, %ticket,
                    "gave back what an acquire answered backend_unavailable may have taken"
                ),
                Err(e) => {
                    tracing::debug!(%lease, error = %e, "store still failing; will settle later");
                    failed.push((ticket, lease));
                }
            }
        }
        let retry = !failed.is_empty();
        inner.unsettled.lock().extend(failed);
        let woken = inner.unsettled.wake.notified();
        tokio::select! {
            _ = woken, if !retry => {}
            _ = tokio::time::sleep(RETRY_EVERY), if retry => {}
            _ = shutdown.changed() => return,
        }
    }
}
