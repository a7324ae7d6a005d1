//! The manager's background tasks: the expiry timer, the deadlock detector, the health check.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Inner;

/// How often the backend is pinged for `backend.unhealthy` / `backend.recovered`.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

pub(super) fn spawn_all(inner: &Arc<Inner>, shutdown: &watch::Sender<bool>) -> Vec<JoinHandle<()>> {
    vec![
        tokio::spawn(expiry_timer(inner.clone(), shutdown.subscribe())),
        tokio::spawn(deadlock_detector(inner.clone(), shutdown.subscribe())),
        tokio::spawn(health_check(inner.clone(), shutdown.subscribe())),
        tokio::spawn(super::unsettled::settle_unknown(
            inner.clone(),
            shutdown.subscribe(),
        )),
    ]
}

/// Sleeps until the store's next deadline (or until woken because an earlier one may exist),
/// then expires what is due: handoff happens at the deadline, not at the next sweep.
async fn expiry_timer(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    // The deadline the last expiry ran for: if the store reports it again (its clock, e.g.
    // Redis's, is behind ours), look again shortly instead of spinning.
    let mut fired: Option<crate::model::Timestamp> = None;
    loop {
        let woken = inner.timer.notified();
        tokio::pin!(woken);
        woken.as_mut().enable();
        // While re-reading, every request with a deadline wakes us (armed = none): nothing can
        // slip in between the read and the sleep.
        inner.armed.store(u64::MAX, Ordering::Release);
        let next = match inner.store.next_deadline().await {
            Ok(next) => next,
            // The backend is down: look again soon.
            Err(_) => Some(inner.now().plus(Duration::from_secs(1))),
        };
        // A shared store: other servers add deadlines this one does not hear of.
        let next = match inner.store.recheck_interval() {
            Some(d) => {
                let soon = inner.now().plus(d);
                Some(next.map_or(soon, |n| n.min(soon)))
            }
            None => next,
        };
        let next = match next {
            Some(n) if fired == Some(n) => Some(n.max(inner.now()).plus(Duration::from_millis(10))),
            other => other,
        };
        inner
            .armed
            .store(next.map_or(u64::MAX, |t| t.as_millis()), Ordering::Release);
        let due = async {
            match next {
                Some(at) => inner.clock.sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = due => {
                fired = next;
                if let Err(e) = inner.guarded(|| inner.store.expire_due()).await {
                    tracing::warn!(error = %e, "expiry failed; retrying");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            _ = &mut woken => {}
            _ = shutdown.changed() => return,
        }
    }
}

async fn deadlock_detector(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let cfg = inner.config().deadlock_detection.clone();
        let next = inner
            .now()
            .plus(cfg.check_interval.max(Duration::from_millis(10)));
        tokio::select! {
            _ = inner.clock.sleep_until(next) => {
                if cfg.enabled {
                    if let Err(e) = inner.detect_deadlocks().await {
                        tracing::warn!(error = %e, "deadlock detection failed");
                    }
                }
            }
            _ = shutdown.changed() => return,
        }
    }
}

async fn health_check(inner: Arc<Inner>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {
                let ok = matches!(
                    tokio::time::timeout(Duration::from_secs(2), inner.store.ping()).await,
                    Ok(Ok(_))
                );
                inner.set_backend_healthy(ok);
            }
            _ = shutdown.changed() => return,
        }
    }
}
