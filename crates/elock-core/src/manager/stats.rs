//! Statistics and the health score, fed by the manager's calls and the committed event stream.
//!
//! The health score (0..=100) starts at 100 and loses points for:
//! - the circuit breaker: 50 while open, 25 while half-open;
//! - the backend: 30 while its last check failed;
//! - acquisitions: when fewer than 95% of the last 1,000 were answered by a working server,
//!   2 points per missing percent, at most 25. Contention is the service working: a grant, a
//!   refusal because the resource is held, a wait that ran out, a full queue, a deadlock among
//!   clients, and a client's own mistake (invalid, not found) all count as answered; failures
//!   are backend_unavailable, internal and shutting_down.
//!
//! Queues and deadlocks, however deep or many, are normal contention and lower nothing: the
//! queue-growth and deadlock-rate alerts watch them (docs/metrics.md).
//!
//! `healthy` from 80, `degraded` from 50, `unhealthy` below.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ErrorCode;
use crate::event::{Event, EventType};
use crate::model::{duration_text, Timestamp};

use super::breaker::BreakerState;

const WINDOW: usize = 1000;

#[derive(Default)]
pub struct Stats {
    requests: AtomicU64,
    successes: AtomicU64,
    failures: AtomicU64,
    active_locks: AtomicI64,
    queue_depth: AtomicI64,
    wait_ms: AtomicU64,
    waits: AtomicU64,
    hold_ms: AtomicU64,
    holds: AtomicU64,
    retries: AtomicU64,
    backend_healthy: AtomicBool,
    recent: Mutex<VecDeque<bool>>,
    deadlocks: Mutex<VecDeque<Timestamp>>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatsSnapshot {
    pub active_locks: i64,
    pub total_requests: u64,
    pub successful_acquires: u64,
    pub failed_acquires: u64,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::model::DurationText))]
    #[serde(with = "duration_text")]
    pub average_wait: Duration,
    #[cfg_attr(feature = "openapi", schema(value_type = crate::model::DurationText))]
    #[serde(with = "duration_text")]
    pub average_hold: Duration,
    pub queue_depth: i64,
    pub retries: u64,
    pub deadlocks_last_hour: usize,
    /// Percentage of the last 1,000 acquisitions that succeeded (100 with none yet).
    pub recent_success_rate: f64,
}

impl Stats {
    pub fn new() -> Self {
        let s = Stats::default();
        s.backend_healthy.store(true, Ordering::Relaxed);
        s
    }

    /// Starting values read from the store (a durable store restarts with leases and tickets).
    pub fn seed(&self, active_locks: usize, queue_depth: usize) {
        self.active_locks
            .store(active_locks as i64, Ordering::Relaxed);
        self.queue_depth
            .store(queue_depth as i64, Ordering::Relaxed);
    }

    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// The outcome of one acquire call: `Ok` granted or queued (detached), `Err(code)` refused.
    pub fn acquire_outcome(&self, result: Result<(), ErrorCode>) {
        let healthy = match result {
            Ok(()) => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(code) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                // Contention (someone else holds it, the wait ran out, the queue is full, a
                // cycle among clients) and a client's own mistakes say nothing about the
                // server's health; only failures of the server do.
                matches!(
                    code,
                    ErrorCode::Locked
                        | ErrorCode::WaitTimeout
                        | ErrorCode::QueueFull
                        | ErrorCode::Deadlock
                        | ErrorCode::InvalidRequest
                        | ErrorCode::NotFound
                )
            }
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == WINDOW {
            recent.pop_front();
        }
        recent.push_back(healthy);
    }

    pub fn deadlock(&self, at: Timestamp) {
        let mut d = self.deadlocks.lock().unwrap_or_else(|e| e.into_inner());
        d.push_back(at);
        while d.len() > 10_000 {
            d.pop_front();
        }
    }

    pub fn set_backend_healthy(&self, healthy: bool) -> bool {
        self.backend_healthy.swap(healthy, Ordering::Relaxed)
    }

    pub fn backend_healthy(&self) -> bool {
        self.backend_healthy.load(Ordering::Relaxed)
    }

    /// Keeps the gauges and averages in step with what committed.
    pub fn observe(&self, e: &Event) {
        match e.kind {
            EventType::LockAcquired => {
                self.active_locks.fetch_add(1, Ordering::Relaxed);
            }
            EventType::QueueGranted => {
                self.active_locks.fetch_add(1, Ordering::Relaxed);
                self.queue_depth.fetch_sub(1, Ordering::Relaxed);
            }
            EventType::QueueEnqueued => {
                self.queue_depth.fetch_add(1, Ordering::Relaxed);
            }
            EventType::QueueTimeout | EventType::QueueCancelled => {
                self.queue_depth.fetch_sub(1, Ordering::Relaxed);
            }
            EventType::DeadlockDetected => self.deadlock(e.at),
            k if k.frees_resources() => {
                self.active_locks.fetch_sub(1, Ordering::Relaxed);
            }
            _ => {}
        }
        if let (EventType::QueueGranted, Some(w)) = (e.kind, e.waited) {
            self.wait_ms
                .fetch_add(w.as_millis() as u64, Ordering::Relaxed);
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(h) = e.held {
            self.hold_ms
                .fetch_add(h.as_millis() as u64, Ordering::Relaxed);
            self.holds.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn snapshot(&self, now: Timestamp) -> StatsSnapshot {
        let avg = |sum: &AtomicU64, n: &AtomicU64| {
            let n = n.load(Ordering::Relaxed);
            Duration::from_millis(sum.load(Ordering::Relaxed).checked_div(n).unwrap_or(0))
        };
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let rate = if recent.is_empty() {
            100.0
        } else {
            100.0 * recent.iter().filter(|ok| **ok).count() as f64 / recent.len() as f64
        };
        StatsSnapshot {
            active_locks: self.active_locks.load(Ordering::Relaxed).max(0),
            total_requests: self.requests.load(Ordering::Relaxed),
            successful_acquires: self.successes.load(Ordering::Relaxed),
            failed_acquires: self.failures.load(Ordering::Relaxed),
            average_wait: avg(&self.wait_ms, &self.waits),
            average_hold: avg(&self.hold_ms, &self.holds),
            queue_depth: self.queue_depth.load(Ordering::Relaxed).max(0),
            retries: self.retries.load(Ordering::Relaxed),
            deadlocks_last_hour: self.deadlocks_since(now, Duration::from_secs(3600)),
            recent_success_rate: rate,
        }
    }

    fn deadlocks_since(&self, now: Timestamp, d: Duration) -> usize {
        let from = Timestamp::from_millis(now.as_millis().saturating_sub(d.as_millis() as u64));
        let list = self.deadlocks.lock().unwrap_or_else(|e| e.into_inner());
        list.iter().filter(|t| **t >= from).count()
    }
}

/// The inputs of the health score, gathered by the manager.
#[derive(Clone, Copy, Debug)]
pub struct HealthInputs {
    pub breaker: BreakerState,
    pub backend_healthy: bool,
    pub recent_success_rate: f64,
    pub deepest_queue: usize,
    pub max_queue_size: usize,
    pub deadlocks_last_hour: usize,
}

/// The score formula documented at the top of this file.
pub fn health_score(i: HealthInputs) -> u8 {
    let mut score = 100.0;
    score -= match i.breaker {
        BreakerState::Open => 50.0,
        BreakerState::HalfOpen => 25.0,
        BreakerState::Closed => 0.0,
    };
    if !i.backend_healthy {
        score -= 30.0;
    }
    if i.recent_success_rate < 95.0 {
        score -= (2.0 * (95.0 - i.recent_success_rate)).min(25.0);
    }
    score.clamp(0.0, 100.0).round() as u8
}

pub fn health_status(score: u8) -> HealthStatus {
    match score {
        80..=100 => HealthStatus::Healthy,
        50..=79 => HealthStatus::Degraded,
        _ => HealthStatus::Unhealthy,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> HealthInputs {
        HealthInputs {
            breaker: BreakerState::Closed,
            backend_healthy: true,
            recent_success_rate: 100.0,
            deepest_queue: 0,
            max_queue_size: 1000,
            deadlocks_last_hour: 0,
        }
    }

    #[test]
    fn the_score_follows_the_documented_formula() {
        assert_eq!(health_score(inputs()), 100);
        assert_eq!(
            health_score(HealthInputs {
                breaker: BreakerState::Open,
                ..inputs()
            }),
            50
        );
        assert_eq!(
            health_score(HealthInputs {
                breaker: BreakerState::HalfOpen,
                ..inputs()
            }),
            75
        );
        assert_eq!(
            health_score(HealthInputs {
                backend_healthy: false,
                ..inputs()
            }),
            70
        );
        assert_eq!(
            health_score(HealthInputs {
                recent_success_rate: 90.0,
                ..inputs()
            }),
            90
        );
        assert_eq!(
            health_score(HealthInputs {
                recent_success_rate: 0.0,
                ..inputs()
            }),
            75
        );
        // Contention lowers nothing.
        assert_eq!(
            health_score(HealthInputs {
                deepest_queue: 1000,
                deadlocks_last_hour: 30,
                ..inputs()
            }),
            100
        );
        let worst = HealthInputs {
            breaker: BreakerState::Open,
            backend_healthy: false,
            recent_success_rate: 0.0,
            deepest_queue: 5000,
            deadlocks_last_hour: 50,
            ..inputs()
        };
        assert_eq!(health_score(worst), 0);
        assert_eq!(health_status(80), HealthStatus::Healthy);
        assert_eq!(health_status(79), HealthStatus::Degraded);
        assert_eq!(health_status(49), HealthStatus::Unhealthy);
    }

    #[test]
    fn contention_counts_as_answered_and_only_server_failures_do_not() {
        let s = Stats::new();
        s.acquire_outcome(Ok(()));
        for code in [
            ErrorCode::Locked,
            ErrorCode::WaitTimeout,
            ErrorCode::QueueFull,
            ErrorCode::Deadlock,
        ] {
            s.acquire_outcome(Err(code));
        }
        s.acquire_outcome(Err(ErrorCode::BackendUnavailable));
        s.acquire_outcome(Err(ErrorCode::Internal));
        s.acquire_outcome(Err(ErrorCode::ShuttingDown));
        let snap = s.snapshot(Timestamp::from_millis(0));
        assert_eq!(snap.successful_acquires, 1);
        assert_eq!(snap.failed_acquires, 7);
        assert_eq!(snap.recent_success_rate, 62.5);
    }
}
