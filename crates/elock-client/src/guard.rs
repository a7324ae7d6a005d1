//! A held lease that looks after itself: renewed in the background at a third of its ttl, its
//! loss reported the moment the client learns of it, released on drop.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use elock_core::api::{ErrorCode, EventType, Lease, LeaseId};

use crate::client::Client;
use crate::error::Result;
use crate::events::{EventItem, EventStream};

/// Why a guarded lease is no longer held.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseLoss {
    /// The server no longer has the lease: it expired, or was force-released or released by
    /// someone else. `message` is the server's answer to the renewal.
    Gone { message: String },
    /// Renewals failed (the server could not be reached) until the lease's deadline passed:
    /// it must be taken as expired, and another holder may have it now.
    Expired { last_error: String },
}

impl std::fmt::Display for LeaseLoss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LeaseLoss::Gone { message } => write!(f, "the lease is gone: {message}"),
            LeaseLoss::Expired { last_error } => write!(
                f,
                "the lease expired: it could not be renewed in time ({last_error})"
            ),
        }
    }
}

/// A lease renewed in the background at a third of its ttl.
///
/// - [`lost`](Self::lost) completes as soon as a renewal learns that the lease is gone, or
///   when renewals kept failing until its deadline passed;
/// - [`release`](Self::release) gives it back and says how that went;
/// - dropping the guard stops renewing and releases the lease in the background.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let started = elock::server::start(elock::server::ServeOptions::in_memory()).await?;
/// # let server = format!("http://{}", started.addr);
/// # tokio::spawn(started.run(std::future::pending()));
/// use std::time::Duration;
/// use elock_client::Client;
///
/// let client = Client::new(&server)?;
/// let guard = client
///     .lock("deploy-bot", ["payments/prod"])?
///     .ttl(Duration::from_secs(30))
///     .wait(Duration::from_secs(60))
///     .guard()
///     .await?;
/// let token = guard.fencing_token("payments/prod").unwrap();
///
/// tokio::select! {
///     loss = guard.lost() => panic!("stop writing with token {token}: {loss}"),
///     _ = tokio::time::sleep(Duration::from_millis(50)) => { /* the protected work */ }
/// }
/// guard.release().await?;
/// # Ok(()) }
/// ```
pub struct LeaseGuard {
    client: Client,
    lease: Arc<Mutex<Lease>>,
    loss: watch::Receiver<Option<LeaseLoss>>,
    renewer: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Guards a lease the client already holds. Make it as soon as the lease is granted: the
    /// deadline it watches is counted from now.
    pub fn new(client: Client, lease: Lease) -> LeaseGuard {
        Self::start(client, lease, None)
    }

    /// Like [`new`](Self::new), and also follows the event stream (`events` from
    /// [`Client::events`], subscribed before the acquire so that nothing falls in between):
    /// a release, expiry or force-release of this lease by anyone else is reported at once,
    /// with its reason, instead of at the next renewal.
    pub fn watching(client: Client, lease: Lease, events: EventStream) -> LeaseGuard {
        Self::start(client, lease, Some(events))
    }

    fn start(client: Client, lease: Lease, events: Option<EventStream>) -> LeaseGuard {
        let (tx, loss) = watch::channel(None);
        let id = lease.id;
        let lease = Arc::new(Mutex::new(lease));
        let renewals = renew(client.clone(), lease.clone(), tx.clone());
        let renewer = tokio::spawn(async move {
            match events {
                None => renewals.await,
                Some(events) => {
                    tokio::select! {
                        () = renewals => {}
                        () = follow(events, id, tx) => {}
                    }
                }
            }
        });
        LeaseGuard {
            client,
            lease,
            loss,
            renewer: Some(renewer),
        }
    }

    /// The lease as last renewed.
    pub fn lease(&self) -> Lease {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn id(&self) -> LeaseId {
        self.lease.lock().unwrap_or_else(|e| e.into_inner()).id
    }

    /// The fencing token of `resource`: pass it to whatever the lock protects.
    pub fn fencing_token(&self, resource: &str) -> Option<u64> {
        self.lease
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .fencing_token(resource)
    }

    /// Why the lease was lost, if it was.
    pub fn loss(&self) -> Option<LeaseLoss> {
        self.loss.borrow().clone()
    }

    /// Completes when the lease is lost (never, while it is held).
    pub async fn lost(&self) -> LeaseLoss {
        let mut rx = self.loss.clone();
        loop {
            if let Some(loss) = rx.borrow_and_update().clone() {
                return loss;
            }
            if rx.changed().await.is_err() {
                // The renewer ended without a loss: the guard is being released.
                std::future::pending::<()>().await;
            }
        }
    }

    /// A receiver that holds `Some` once the lease is lost: for a `select!` in another task.
    pub fn loss_signal(&self) -> watch::Receiver<Option<LeaseLoss>> {
        self.loss.clone()
    }

    /// Stops renewing and releases the lease: the lease as it was, or why it could not be
    /// released (`not_found` when it was already lost).
    pub async fn release(mut self) -> Result<Lease> {
        if let Some(r) = self.renewer.take() {
            r.abort();
        }
        self.client.release(self.id()).await
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        let Some(renewer) = self.renewer.take() else {
            return;
        };
        renewer.abort();
        if self.loss.borrow().is_some() {
            return;
        }
        // Best effort: without a runtime (the program is ending) the lease expires by itself.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (client, id) = (self.client.clone(), self.id());
            rt.spawn(async move {
                if let Err(e) = client.release(id).await {
                    tracing::debug!(lease = %id, error = %e, "a dropped guard's release failed");
                }
            });
        }
    }
}

/// Reports the end of lease `id` as soon as an event says so; returns when it did (or when the
/// stream ends for good, leaving the renewals to notice).
async fn follow(mut events: EventStream, id: LeaseId, loss: watch::Sender<Option<LeaseLoss>>) {
    loop {
        let event = match events.next().await {
            Ok(EventItem::Event(e)) => e,
            Ok(EventItem::Gap(_)) => continue,
            Err(e) => {
                tracing::warn!(error = %e, "the event stream ended; the lease is watched by its renewals");
                return std::future::pending().await;
            }
        };
        if event.lease_id != Some(id) {
            continue;
        }
        let message = match event.kind {
            EventType::LockForceReleased => format!(
                "force-released{}",
                event
                    .reason
                    .as_deref()
                    .map(|r| format!(": {r}"))
                    .unwrap_or_default()
            ),
            EventType::LockExpired => "expired: it was not renewed in time".to_string(),
            EventType::LockReleased => "released by another client holding its id".to_string(),
            _ => continue,
        };
        let _ = loss.send(Some(LeaseLoss::Gone { message }));
        return;
    }
}

/// The background renewal: every ttl/3; after a failure that is not a verdict, sooner, until
/// the deadline known from the last success has passed.
async fn renew(client: Client, lease: Arc<Mutex<Lease>>, loss: watch::Sender<Option<LeaseLoss>>) {
    let (id, ttl) = {
        let l = lease.lock().unwrap_or_else(|e| e.into_inner());
        (l.id, l.ttl)
    };
    // A lease without expiry needs no renewal (an event watch may still report its end).
    let Some(ttl) = ttl else {
        return std::future::pending().await;
    };
    let period = (ttl / 3).max(Duration::from_millis(10));
    // Counted from when the guard was made, right after the grant.
    let mut deadline = Instant::now() + ttl;
    let mut next = Instant::now() + period;
    loop {
        tokio::time::sleep_until(next).await;
        let sent = Instant::now();
        let answer = tokio::select! {
            answer = client.renew(id, None) => answer,
            _ = tokio::time::sleep_until(deadline) => {
                let _ = loss.send(Some(LeaseLoss::Expired {
                    last_error: "the renewal got no answer before the lease's deadline".into(),
                }));
                return;
            }
        };
        match answer {
            Ok(renewed) => {
                deadline = sent + renewed.ttl.unwrap_or(ttl);
                *lease.lock().unwrap_or_else(|e| e.into_inner()) = renewed;
                next = sent + period;
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                let _ = loss.send(Some(LeaseLoss::Gone {
                    message: e.to_string(),
                }));
                return;
            }
            Err(e) => {
                let now = Instant::now();
                if now >= deadline {
                    let _ = loss.send(Some(LeaseLoss::Expired {
                        last_error: e.to_string(),
                    }));
                    return;
                }
                tracing::warn!(lease = %id, error = %e, "renewal failed; trying again");
                next = (now + (period / 4).min(Duration::from_secs(1))).min(deadline);
            }
        }
    }
}
