//! The engine's settings (docs/configuration.md): what the lock table and the manager's policies need.
//!
//! Names follow the YAML file (`kebab-case`); the server's configuration loader (file, then
//! environment, then flags) fills these structs. Defaults serve a new installation: the queue on,
//! deadlock prevention on, expiry on every lease.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::duration_text;
use crate::policy::{Fallback, Policies};
use crate::table::{ResolutionPolicy, TableConfig};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineConfig {
    /// `false`: Atlantis-compatible behaviour only (try-lock, no queue, no expiry, no priority).
    pub enabled: bool,
    /// The ttl of a lease whose request names none.
    #[serde(with = "duration_text")]
    pub default_timeout: Duration,
    /// A ttl above this is refused.
    #[serde(with = "duration_text")]
    pub max_timeout: Duration,
    /// Whether a request may ask for no expiry (`ttl: null`); Atlantis-compatible locks only.
    pub allow_no_expiry: bool,
    /// Name of this server in events (`instance`).
    pub instance: String,
    pub priority_queue: QueueConfig,
    pub retry: RetryConfig,
    pub deadlock_detection: DeadlockConfig,
    pub circuit_breaker: BreakerConfig,
    pub events: EventsConfig,
    /// Per-resource defaults and bounds, first matching rule first (crate::policy).
    pub policies: Policies,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct QueueConfig {
    /// `false`: `wait > 0` becomes a retry loop (if retry is on) or a plain refusal.
    pub enabled: bool,
    pub max_queue_size: usize,
    /// How long a detached ticket may wait.
    #[serde(with = "duration_text")]
    pub queue_timeout: Duration,
    #[serde(with = "duration_text")]
    pub starvation_threshold: Duration,
    pub max_priority_boost: u8,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RetryConfig {
    pub enabled: bool,
    pub max_attempts: u32,
    #[serde(with = "duration_text")]
    pub base_delay: Duration,
    #[serde(with = "duration_text")]
    pub max_delay: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct DeadlockConfig {
    pub enabled: bool,
    pub prevention: bool,
    #[serde(with = "duration_text")]
    pub check_interval: Duration,
    pub resolution_policy: ResolutionPolicy,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct BreakerConfig {
    pub enabled: bool,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EventsConfig {
    pub enabled: bool,
    /// Events kept for `Last-Event-ID` resume, and each subscriber's backlog.
    pub buffer_size: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            enabled: true,
            default_timeout: Duration::from_secs(30 * 60),
            max_timeout: Duration::from_secs(2 * 3600),
            allow_no_expiry: false,
            instance: "elock".into(),
            priority_queue: QueueConfig::default(),
            retry: RetryConfig::default(),
            deadlock_detection: DeadlockConfig::default(),
            circuit_breaker: BreakerConfig::default(),
            events: EventsConfig::default(),
            policies: Policies::default(),
        }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            enabled: true,
            max_queue_size: 1000,
            queue_timeout: Duration::from_secs(10 * 60),
            starvation_threshold: Duration::from_secs(2 * 60),
            max_priority_boost: 3,
        }
    }
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            enabled: false,
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl Default for DeadlockConfig {
    fn default() -> Self {
        DeadlockConfig {
            enabled: true,
            prevention: true,
            check_interval: Duration::from_secs(30),
            resolution_policy: ResolutionPolicy::LowestPriority,
        }
    }
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            enabled: true,
            failure_threshold: 10,
            success_threshold: 5,
            timeout: Duration::from_secs(30),
        }
    }
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            enabled: true,
            buffer_size: 1000,
        }
    }
}

impl EngineConfig {
    /// What a policy rule stands in front of.
    pub fn policy_fallback(&self) -> Fallback {
        Fallback {
            default_timeout: self.default_timeout,
            max_queue_size: self.priority_queue.max_queue_size,
        }
    }

    /// The lock table's share of the settings.
    pub fn table_config(&self) -> TableConfig {
        TableConfig {
            max_timeout: self.max_timeout,
            max_queue_wait: self.max_timeout.max(self.priority_queue.queue_timeout),
            // The store keeps leases without expiry (Atlantis's locks never expire); who may ask
            // for one is the manager's rule (`allow-no-expiry` governs native requests only).
            allow_no_ttl: true,
            max_queue_size: self.priority_queue.max_queue_size,
            starvation_threshold: self.priority_queue.starvation_threshold,
            max_priority_boost: self.priority_queue.max_priority_boost,
            deadlock_prevention: self.deadlock_detection.enabled
                && self.deadlock_detection.prevention,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_contract() {
        let c = EngineConfig::default();
        assert!(c.enabled && c.priority_queue.enabled && c.deadlock_detection.prevention);
        assert_eq!(c.default_timeout, Duration::from_secs(1800));
        assert_eq!(c.max_timeout, Duration::from_secs(7200));
        assert_eq!(c.priority_queue.max_queue_size, 1000);
        assert_eq!(c.circuit_breaker.failure_threshold, 10);
        assert!(!c.retry.enabled);
    }

    #[test]
    fn kebab_case_keys_and_text_durations_parse_and_unknown_keys_fail() {
        let c: EngineConfig = serde_json::from_str(
            r#"{"max-timeout": "1h", "priority-queue": {"max-queue-size": 5, "queue-timeout": "30s"}}"#,
        )
        .unwrap();
        assert_eq!(c.max_timeout, Duration::from_secs(3600));
        assert_eq!(c.priority_queue.max_queue_size, 5);
        let e =
            serde_json::from_str::<EngineConfig>(r#"{"priority-queue": {"max-queue-sise": 5}}"#)
                .unwrap_err();
        assert!(e.to_string().contains("max-queue-sise"), "{e}");
    }
}
