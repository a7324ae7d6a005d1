//! The circuit breaker: closed → open after `failure-threshold` consecutive backend
//! failures → half-open after `timeout` → closed after `success-threshold` successes (any failure
//! while half-open opens it again). While open, calls fail fast with `backend_unavailable`.

use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::config::BreakerConfig;
use crate::model::Timestamp;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// The value of the `circuit_breaker_state` gauge: 0 closed, 1 open, 2 half-open.
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A state change worth announcing (`breaker.opened`, `breaker.closed`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    Opened,
    Closed,
}

#[derive(Debug)]
struct Inner {
    config: BreakerConfig,
    state: BreakerState,
    failures: u32,
    successes: u32,
    opened_at: Timestamp,
}

/// One mutex holds the settings and the state: each call takes it once.
#[derive(Debug)]
pub struct CircuitBreaker {
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    pub fn new(config: BreakerConfig) -> Self {
        CircuitBreaker {
            inner: Mutex::new(Inner {
                config,
                state: BreakerState::Closed,
                failures: 0,
                successes: 0,
                opened_at: Timestamp::default(),
            }),
        }
    }

    pub fn set_config(&self, config: BreakerConfig) {
        self.lock().config = config;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The state at `now` (an open breaker whose timeout has passed is half-open).
    pub fn state(&self, now: Timestamp) -> BreakerState {
        self.lock().state_at(now)
    }

    /// Whether a call may go to the backend now.
    pub fn allows(&self, now: Timestamp) -> bool {
        let mut s = self.lock();
        !s.config.enabled || s.state_at(now) != BreakerState::Open
    }

    pub fn on_success(&self, now: Timestamp) -> Option<Transition> {
        let mut s = self.lock();
        s.failures = 0;
        if s.state_at(now) == BreakerState::HalfOpen {
            s.successes += 1;
            if s.successes >= s.config.success_threshold.max(1) {
                s.state = BreakerState::Closed;
                return Some(Transition::Closed);
            }
        }
        None
    }

    pub fn on_failure(&self, now: Timestamp) -> Option<Transition> {
        let mut s = self.lock();
        if !s.config.enabled {
            return None;
        }
        s.failures += 1;
        let open = match s.state_at(now) {
            BreakerState::HalfOpen => true,
            BreakerState::Closed => s.failures >= s.config.failure_threshold.max(1),
            BreakerState::Open => false,
        };
        if open {
            s.state = BreakerState::Open;
            s.opened_at = now;
            s.successes = 0;
            return Some(Transition::Opened);
        }
        None
    }
}

impl Inner {
    fn state_at(&mut self, now: Timestamp) -> BreakerState {
        if self.state == BreakerState::Open && now >= self.opened_at.plus(self.config.timeout) {
            self.state = BreakerState::HalfOpen;
            self.successes = 0;
        }
        self.state
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn breaker() -> CircuitBreaker {
        CircuitBreaker::new(BreakerConfig {
            enabled: true,
            failure_threshold: 3,
            success_threshold: 2,
            timeout: Duration::from_secs(30),
        })
    }

    #[test]
    fn opens_after_threshold_then_half_opens_after_timeout_then_closes() {
        let b = breaker();
        let t = Timestamp::from_millis(1_000_000);
        assert_eq!(b.on_failure(t), None);
        assert_eq!(b.on_failure(t), None);
        assert_eq!(b.on_failure(t), Some(Transition::Opened));
        assert!(!b.allows(t));
        assert_eq!(b.state(t.plus(Duration::from_secs(29))), BreakerState::Open);
        let later = t.plus(Duration::from_secs(30));
        assert_eq!(b.state(later), BreakerState::HalfOpen);
        assert!(b.allows(later));
        assert_eq!(b.on_success(later), None);
        assert_eq!(b.on_success(later), Some(Transition::Closed));
        assert_eq!(b.state(later), BreakerState::Closed);
    }

    #[test]
    fn a_failure_while_half_open_reopens_and_successes_reset_the_count() {
        let b = breaker();
        let t = Timestamp::from_millis(0);
        for _ in 0..3 {
            b.on_failure(t);
        }
        let later = t.plus(Duration::from_secs(31));
        assert_eq!(b.on_failure(later), Some(Transition::Opened));
        assert_eq!(b.state(later), BreakerState::Open);

        let c = breaker();
        c.on_failure(t);
        c.on_failure(t);
        c.on_success(t);
        assert_eq!(c.on_failure(t), None, "failures must be consecutive");
    }

    #[test]
    fn a_disabled_breaker_never_opens() {
        let b = CircuitBreaker::new(BreakerConfig {
            enabled: false,
            ..BreakerConfig::default()
        });
        for _ in 0..100 {
            assert_eq!(b.on_failure(Timestamp::from_millis(0)), None);
        }
        assert!(b.allows(Timestamp::from_millis(0)));
    }
}
