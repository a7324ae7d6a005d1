//! Acquire: the feature switches, try-lock, detached tickets, attached waits and their endings.

use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::event::{Event, EventType};
use crate::model::{LeaseId, Metadata, Owner, Priority, Reentry, ResourceName, TicketId};
use crate::policy::{Asked, Settled};
use crate::table::{AcquireRequest, Acquired, CancelReason, DeadlockRecord, Resolution, WaitMode};

use super::retry::backoff;
use super::waiters::WaitOutcome;
use super::Inner;

/// How long an attached wait trusts the store's own ticket deadline before settling it itself.
const DEADLINE_GRACE: Duration = Duration::from_secs(1);

/// The lease's lifetime as requested.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Ttl {
    /// `default-timeout`.
    #[default]
    Default,
    /// No expiry (Atlantis-compatible locks, when allowed).
    Never,
    After(Duration),
}

impl Ttl {
    pub fn is_default(&self) -> bool {
        matches!(self, Ttl::Default)
    }
}

/// An acquire request as a surface hands it to the manager (already validated names).
#[derive(Clone, Debug, PartialEq)]
pub struct LockRequest {
    pub owner: Owner,
    pub resources: Vec<ResourceName>,
    /// `None`: the resource's policy, else `normal`.
    pub priority: Option<Priority>,
    pub ttl: Ttl,
    /// Zero: try-lock. Otherwise how long to wait (attached) or that queuing is wanted
    /// (detached). `None`: the resource's policy, else zero.
    pub wait: Option<Duration>,
    /// Return the ticket at once; it is granted by handoff and lives until `queue-timeout`.
    pub detach: bool,
    pub metadata: Option<Metadata>,
    /// `Refuse`: never the owner's own lease back; this request is a holder of its own.
    pub reentry: Reentry,
    /// A lock taken for Atlantis (its adapter, its imports, `elock atlantis run`): with no ttl of
    /// its own or from a policy it never expires, whatever `allow-no-expiry` says, as Atlantis's
    /// locks never expire.
    pub for_atlantis: bool,
}

impl LockRequest {
    /// A try-lock of one resource with the defaults.
    pub fn new(owner: Owner, resources: Vec<ResourceName>) -> Self {
        LockRequest {
            owner,
            resources,
            priority: None,
            ttl: Ttl::Default,
            wait: None,
            detach: false,
            metadata: None,
            reentry: Reentry::Allow,
            for_atlantis: false,
        }
    }
}

/// The one step that fills in what a request leaves out (the resource's policy, then the
/// server's defaults) and holds it to the bounds, whichever surface it came from.
fn settle(cfg: &crate::config::EngineConfig, req: &LockRequest) -> Result<Settled> {
    let settled = cfg.policies.settle(
        &req.resources,
        Asked {
            priority: req.priority,
            ttl: req.ttl,
            wait: req.wait,
            for_atlantis: req.for_atlantis,
        },
        cfg.policy_fallback(),
    )?;
    if settled.ttl.is_none() && !cfg.allow_no_expiry && !req.for_atlantis {
        return Err(Error::invalid(
            "ttl",
            "ttl null (no expiry) is allowed only when enhanced-locking.allow-no-expiry is true \
             (locks taken through the Atlantis adapter never expire without it)",
        ));
    }
    if settled.wait > cfg.max_timeout {
        return Err(Error::invalid(
            "wait",
            format!(
                "wait {} is above max-timeout {}",
                crate::model::format_duration(settled.wait),
                crate::model::format_duration(cfg.max_timeout)
            ),
        ));
    }
    Ok(settled)
}

/// An acquire, and how long it stood in a queue (zero unless it waited attached).
pub(super) async fn acquire(inner: &Arc<Inner>, req: LockRequest) -> (Result<Acquired>, Duration) {
    inner.stats.request();
    let mut queued_for = Duration::ZERO;
    let result = acquire_inner(inner, req, &mut queued_for).await;
    inner
        .stats
        .acquire_outcome(result.as_ref().map(|_| ()).map_err(|e| e.code()));
    (result, queued_for)
}

async fn acquire_inner(
    inner: &Arc<Inner>,
    req: LockRequest,
    queued_for: &mut Duration,
) -> Result<Acquired> {
    let cfg = inner.config();
    let (settled, detach) = if cfg.enabled {
        (settle(&cfg, &req)?, req.detach)
    } else {
        // Atlantis-compatible behaviour only: try-lock, no expiry, no priority.
        let plain = Settled {
            priority: Priority::Normal,
            ttl: None,
            wait: Duration::ZERO,
            queue_limits: Default::default(),
        };
        (plain, false)
    };
    let Settled {
        priority,
        ttl,
        wait,
        queue_limits,
    } = settled;
    let (lease_id, ticket_id) = inner.store.new_ids(&req.resources);
    let mut op = AcquireRequest {
        lease_id,
        ticket_id,
        owner: req.owner,
        resources: req.resources,
        priority,
        ttl,
        metadata: req.metadata,
        wait: WaitMode::Try,
        reentry: req.reentry,
        queue_limits,
    };
    if wait.is_zero() && !detach {
        return store_acquire(inner, op).await;
    }
    if !cfg.priority_queue.enabled {
        if cfg.retry.enabled {
            return acquire_by_retry(inner, op, wait).await;
        }
        return store_acquire(inner, op).await;
    }
    let now = inner.now();
    if detach {
        // A detached ticket stays in line for the wait asked for (or the policy's), else for
        // queue-timeout.
        let stay = if wait.is_zero() {
            cfg.priority_queue.queue_timeout
        } else {
            wait
        };
        op.wait = WaitMode::Queue {
            deadline: Some(now.plus(stay)),
            detached: true,
        };
        return store_acquire(inner, op).await;
    }
    let deadline = now.plus(wait);
    op.wait = WaitMode::Queue {
        deadline: Some(deadline),
        detached: false,
    };
    let (ticket, lease) = (op.ticket_id, op.lease_id);
    let granted = inner.waiters.register(ticket);
    // From here on, if the caller goes away, the guard cancels the ticket (or releases the lease
    // if it was granted in the meantime).
    let mut guard = AbandonGuard::new(inner.clone(), ticket, lease);
    match store_acquire(inner, op).await {
        Ok(Acquired::Queued { .. }) => {}
        other => {
            inner.waiters.remove(&ticket);
            guard.disarm();
            return other;
        }
    }
    tokio::pin!(granted);
    let recheck = inner.store.recheck_interval();
    let mut stopping = false;
    let outcome = loop {
        tokio::select! {
            o = &mut granted => break o.ok(),
            _ = inner.clock.sleep_until(deadline.plus(DEADLINE_GRACE)) => break None,
            // The server is stopping: the ticket is settled below, the caller told to ask again.
            _ = inner.closing() => {
                stopping = true;
                break None;
            }
            // A shared store: another server may settle the ticket and its message be lost.
            _ = sleep_or_never(recheck) => {
                if let Some(o) = recheck_ticket(inner, ticket, lease, deadline).await {
                    inner.waiters.remove(&ticket);
                    break Some(o);
                }
            }
        }
    };
    guard.disarm();
    let waited = inner.now().since(now);
    *queued_for = waited;
    match outcome {
        Some(WaitOutcome::Granted(lease)) => handed_over(inner, ticket, lease, waited).await,
        Some(WaitOutcome::TimedOut) => Err(Error::WaitTimeout {
            waited,
            reason: "timeout".into(),
        }),
        Some(WaitOutcome::Deadlock(cycle)) => Err(Error::Deadlock { cycle }),
        Some(WaitOutcome::Cancelled(reason)) => Err(Error::WaitTimeout { waited, reason }),
        // The store did not settle the ticket in time, or the server is stopping: settle it
        // here (a grant that came first is still handed over).
        None => {
            inner.waiters.remove(&ticket);
            match settle_abandoned(inner, ticket, lease, false).await? {
                Some(lease) => handed_over(inner, ticket, lease, waited).await,
                None if stopping => Err(Error::ShuttingDown),
                None => Err(Error::WaitTimeout {
                    waited,
                    reason: "timeout".into(),
                }),
            }
        }
    }
}

/// A lease granted by handoff, on its way to the waiter: the store hears that it is delivered
/// first (a shared store releases undelivered handoffs of a server taken for dead). If the store
/// cannot say, the outcome is unknown to the waiter: it is answered `backend_unavailable` and
/// the lease given back; if the store had already released it, the waiter was not granted.
async fn handed_over(
    inner: &Arc<Inner>,
    ticket: TicketId,
    lease: crate::model::Lease,
    waited: Duration,
) -> Result<Acquired> {
    let mut attempt = 0;
    loop {
        match inner.store.delivered(&lease).await {
            Ok(true) => {
                return Ok(Acquired::Granted {
                    lease,
                    reentrant: false,
                })
            }
            Ok(false) => {
                return Err(Error::WaitTimeout {
                    waited,
                    reason: "released before it reached this server's waiter (the server missed its heartbeat)".into(),
                })
            }
            Err(e) if attempt < 3 => {
                attempt += 1;
                tracing::debug!(lease = %lease.id, error = %e, "confirming a handoff; retrying");
                tokio::time::sleep(Duration::from_millis(100 * attempt)).await;
            }
            Err(e) => {
                inner.unsettled.add(ticket, lease.id);
                return Err(e);
            }
        }
    }
}

async fn sleep_or_never(d: Option<Duration>) {
    match d {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

/// Reads the ticket again: still queued (`None`), granted, or gone without a grant.
async fn recheck_ticket(
    inner: &Arc<Inner>,
    ticket: TicketId,
    lease: LeaseId,
    deadline: crate::model::Timestamp,
) -> Option<WaitOutcome> {
    match inner.store.get_ticket(ticket).await {
        Ok(None) => {}
        _ => return None,
    }
    match inner.store.get_lease(lease).await {
        Ok(Some(l)) => Some(WaitOutcome::Granted(l)),
        Ok(None) if inner.now() >= deadline => Some(WaitOutcome::TimedOut),
        Ok(None) => Some(WaitOutcome::Cancelled("cancelled".into())),
        Err(_) => None,
    }
}

/// One store acquire through the breaker; records prevented deadlocks; wakes the expiry timer.
async fn store_acquire(inner: &Arc<Inner>, op: AcquireRequest) -> Result<Acquired> {
    let owner = op.owner.clone();
    let (ticket_id, lease_id) = (op.ticket_id, op.lease_id);
    let result = inner.guarded(|| inner.store.acquire(op.clone())).await;
    match &result {
        Ok(Acquired::Granted { lease, .. }) => inner.wake_timer_before(lease.expires_at),
        Ok(Acquired::Queued { ticket }) => inner.wake_timer_before(ticket.deadline),
        Err(Error::Deadlock { cycle }) => {
            let now = inner.now();
            inner.history.push(DeadlockRecord {
                detected_at: now,
                cycle: cycle.clone(),
                resolution: Resolution::Prevented,
                victim: Some(owner.clone()),
                victim_ticket: None,
                policy: None,
            });
            let mut e = Event::new(EventType::DeadlockDetected, now).with_reason("prevented");
            e.owner = Some(owner);
            e.resources = cycle.iter().map(|c| c.resource.clone()).collect();
            e.cycle = Some(cycle.clone());
            inner.publish_local(e);
        }
        // The request may have reached the store before it failed: give back what it may
        // have taken once the store answers again (the caller was told it holds nothing).
        Err(e) if e.is_backend_failure() => inner.unsettled.add(ticket_id, lease_id),
        Err(_) => {}
    }
    result
}

/// `priority-queue.enabled: false` with retry on: try again with backoff until `wait` runs out.
async fn acquire_by_retry(
    inner: &Arc<Inner>,
    op: AcquireRequest,
    wait: Duration,
) -> Result<Acquired> {
    let cfg = inner.config();
    let retry = &cfg.retry;
    let start = inner.now();
    let deadline = start.plus(wait);
    let mut attempt = 0;
    loop {
        match store_acquire(inner, op.clone()).await {
            Err(Error::Locked { .. }) => {
                let delay = backoff(retry, attempt);
                attempt += 1;
                if attempt >= retry.max_attempts || inner.now().plus(delay) >= deadline {
                    return Err(Error::WaitTimeout {
                        waited: inner.now().since(start),
                        reason: format!("still locked after {attempt} attempts"),
                    });
                }
                inner.stats.retry();
                inner.clock.sleep_until(inner.now().plus(delay)).await;
            }
            other => return other,
        }
    }
}

/// Removes a ticket whose waiter is gone. Returns the lease if it had been granted meanwhile and
/// `release` is false; releases it if `release` is true.
pub(super) async fn settle_abandoned(
    inner: &Arc<Inner>,
    ticket: TicketId,
    lease: LeaseId,
    release: bool,
) -> Result<Option<crate::model::Lease>> {
    let reason = if release {
        CancelReason::ClientGone
    } else {
        CancelReason::Cancelled
    };
    match inner.store.cancel_ticket(ticket, reason).await {
        Ok(_) => Ok(None),
        Err(Error::NotFound { .. }) => match inner.store.get_lease(lease).await? {
            Some(l) if release => {
                inner.store.release(l.id).await?;
                Ok(None)
            }
            found => Ok(found),
        },
        Err(e) => Err(e),
    }
}

/// Cancels the ticket (or releases what it was granted) if the waiting caller is dropped.
struct AbandonGuard {
    inner: Option<Arc<Inner>>,
    ticket: TicketId,
    lease: LeaseId,
}

impl AbandonGuard {
    fn new(inner: Arc<Inner>, ticket: TicketId, lease: LeaseId) -> Self {
        AbandonGuard {
            inner: Some(inner),
            ticket,
            lease,
        }
    }

    fn disarm(&mut self) {
        self.inner = None;
    }
}

impl Drop for AbandonGuard {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        inner.waiters.remove(&self.ticket);
        let (ticket, lease) = (self.ticket, self.lease);
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = settle_abandoned(&inner, ticket, lease, true).await {
                    tracing::warn!(%ticket, error = %e, "could not remove the ticket of a caller that went away");
                }
            });
        }
    }
}
