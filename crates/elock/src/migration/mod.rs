//! Migrating from Atlantis's own locking to elock (`migration.*`; docs/migration.md).
//!
//! The legacy store is Atlantis's lock storage in Redis (`atlantis_redis.rs`). The adapter's
//! calls (`/api/atlantis/v1/...`, Atlantis's own endpoints) go where the mode says:
//!
//! - `off`: no migration; elock serves (the legacy store is not used).
//! - `shadow`: the legacy store serves and decides; every write is repeated on elock and, with
//!   `validation-enabled`, the two answers are compared and differences counted and kept.
//! - `split`: a stable share of resources (`traffic-percentage`, by FNV-1a of the lock key) is
//!   served by elock, the rest by the legacy store. Raising the percentage only moves resources
//!   to elock, never back. A lock taken before a change is still found and unlocked where it is.
//! - `enhanced`: elock only; the legacy store, if configured, is left alone (so that
//!   `elock compare-backends` can still read it).

pub mod atlantis_redis;

use std::sync::Mutex;

pub use atlantis_redis::AtlantisRedis;
pub use elock_atlantis::adapter::{MigrationMode, MigrationReport, MigrationStats, Mismatch};

/// Whether `key` is served by elock in `split` mode at `percentage`: FNV-1a (64-bit) of the
/// key, modulo 100, below the percentage. Stable across servers, restarts and versions.
pub fn routes_to_elock(key: &str, percentage: u8) -> bool {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h % 100 < u64::from(percentage)
}

/// The migration settings in force and what they have done.
pub struct Migration {
    pub mode: MigrationMode,
    pub percentage: u8,
    pub validation: bool,
    pub legacy: Option<AtlantisRedis>,
    stats: Mutex<MigrationStats>,
}

impl Migration {
    pub fn new(
        mode: MigrationMode,
        percentage: u8,
        validation: bool,
        legacy: Option<AtlantisRedis>,
    ) -> Migration {
        Migration {
            mode,
            percentage,
            validation,
            legacy,
            stats: Mutex::new(MigrationStats::default()),
        }
    }

    /// The legacy store when the mode uses it.
    pub fn legacy_in_use(&self) -> Option<&AtlantisRedis> {
        match self.mode {
            MigrationMode::Shadow | MigrationMode::Split => self.legacy.as_ref(),
            MigrationMode::Off | MigrationMode::Enhanced => None,
        }
    }

    /// Whether elock serves `key` (in `shadow` the legacy store does, elock follows).
    pub fn elock_serves(&self, key: &str) -> bool {
        match (self.mode, &self.legacy) {
            (_, None) | (MigrationMode::Off | MigrationMode::Enhanced, _) => true,
            (MigrationMode::Shadow, Some(_)) => false,
            (MigrationMode::Split, Some(_)) => routes_to_elock(key, self.percentage),
        }
    }

    pub fn shadowing(&self) -> bool {
        self.mode == MigrationMode::Shadow && self.legacy.is_some()
    }

    fn with<T>(&self, f: impl FnOnce(&mut MigrationStats) -> T) -> T {
        f(&mut self.stats.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn served(&self, by_elock: bool) {
        self.with(|s| {
            if by_elock {
                s.served_by_elock += 1
            } else {
                s.served_by_legacy += 1
            }
        });
    }

    /// Records a comparison of the two answers (`legacy` and `elock` as shown to people).
    pub fn compare(&self, operation: &'static str, key: &str, legacy: String, elock: String) {
        if !self.validation {
            return;
        }
        self.with(|s| {
            s.compared += 1;
            if legacy != elock {
                tracing::warn!(
                    operation,
                    key,
                    legacy = %legacy,
                    elock = %elock,
                    "shadow mode: elock answered differently from the legacy store"
                );
                s.mismatches += 1;
                if s.recent.len() == 100 {
                    s.recent.pop_front();
                }
                s.recent.push_back(Mismatch {
                    operation: operation.into(),
                    key: key.to_string(),
                    legacy,
                    elock,
                });
            }
        });
    }

    /// The state for `GET /api/atlantis/v1/migration`.
    pub fn report(&self) -> MigrationReport {
        self.with(|s| MigrationReport {
            mode: self.mode,
            traffic_percentage: self.percentage,
            validation_enabled: self.validation,
            legacy_store: self.legacy.is_some(),
            stats: s.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_share_routed_to_elock_follows_the_percentage() {
        let keys: Vec<String> = (0..10_000)
            .map(|i| format!("acme/repo{i}/./default/"))
            .collect();
        for pct in [0u8, 10, 50, 90, 100] {
            let n = keys.iter().filter(|k| routes_to_elock(k, pct)).count();
            let expected = 100 * usize::from(pct);
            assert!(
                n.abs_diff(expected) <= 300,
                "{pct}%: {n} of 10000 routed to elock"
            );
        }
    }

    proptest! {
        /// Raising the percentage never moves a resource back to the legacy store.
        #[test]
        fn raising_the_percentage_only_moves_resources_to_elock(key in ".{1,80}", a in 0u8..=100, b in 0u8..=100) {
            let (lo, hi) = (a.min(b), a.max(b));
            prop_assert!(!routes_to_elock(&key, lo) || routes_to_elock(&key, hi));
            prop_assert!(!routes_to_elock(&key, 0));
            prop_assert!(routes_to_elock(&key, 100));
        }
    }
}
