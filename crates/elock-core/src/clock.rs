//! Where "now" comes from: the system clock in production, a hand-moved clock in tests.
//!
//! Stores read the time through a [`Clock`]; tests move a [`ManualClock`] instead of sleeping, so
//! expiry, aging and queue timeouts are tested exactly and fast.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use tokio::sync::Notify;

use crate::model::Timestamp;

#[async_trait]
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// Returns once `now() >= at`.
    async fn sleep_until(&self, at: Timestamp);
}

/// Wall-clock time. The lock table never lets its own time go backwards, so a clock step back
/// (NTP) delays expiry by at most the step; it never expires a lease early.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_system(SystemTime::now())
    }

    async fn sleep_until(&self, at: Timestamp) {
        loop {
            let now = self.now();
            if now >= at {
                return;
            }
            tokio::time::sleep(at.since(now)).await;
        }
    }
}

/// A clock that moves only when told to. Sleepers wake when it passes their deadline.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicU64,
    moved: Notify,
}

impl ManualClock {
    pub fn new(start: Timestamp) -> Arc<Self> {
        Arc::new(ManualClock {
            now: AtomicU64::new(start.as_millis()),
            moved: Notify::new(),
        })
    }

    /// A clock at a fixed, realistic instant (2026-01-01T00:00:00Z).
    pub fn at_epoch_2026() -> Arc<Self> {
        Self::new(Timestamp::from_millis(1_767_225_600_000))
    }

    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as u64, Ordering::SeqCst);
        self.moved.notify_waiters();
    }

    pub fn set(&self, t: Timestamp) {
        self.now.fetch_max(t.as_millis(), Ordering::SeqCst);
        self.moved.notify_waiters();
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now.load(Ordering::SeqCst))
    }

    async fn sleep_until(&self, at: Timestamp) {
        loop {
            let notified = self.moved.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.now() >= at {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_when_it_passes_their_deadline() {
        let clock = ManualClock::new(Timestamp::from_millis(1000));
        let c = clock.clone();
        let sleeper =
            tokio::spawn(async move { c.sleep_until(Timestamp::from_millis(1500)).await });
        tokio::task::yield_now().await;
        clock.advance(Duration::from_millis(400));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        clock.advance(Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), sleeper)
            .await
            .unwrap()
            .unwrap();
    }
}
