//! Exponential backoff with jitter: attempt n waits a random time in [d/2, d], where
//! d = min(max-delay, base-delay × 2^n). Half the delay is fixed so retries keep backing off;
//! the other half is random so clients that failed together do not retry together.

use std::time::Duration;

use rand::Rng;

use crate::config::RetryConfig;

pub fn backoff(config: &RetryConfig, attempt: u32) -> Duration {
    let base = config.base_delay.as_millis() as u64;
    let cap = config.max_delay.as_millis() as u64;
    let d = base.saturating_mul(1u64 << attempt.min(32)).min(cap).max(1);
    let half = d / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=d - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_within_jitter_and_stop_at_the_cap() {
        let cfg = RetryConfig {
            enabled: true,
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for _ in 0..200 {
            let d0 = backoff(&cfg, 0).as_millis();
            assert!((50..=100).contains(&d0), "{d0}");
            let d2 = backoff(&cfg, 2).as_millis();
            assert!((200..=400).contains(&d2), "{d2}");
            let d9 = backoff(&cfg, 9).as_millis();
            assert!((500..=1000).contains(&d9), "{d9}");
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| backoff(&cfg, 3)).collect();
        assert!(spread.len() > 5, "jitter must vary the delay");
    }
}
