//! Atlantis's lock storage as the migration mode routes it (crate::migration): to elock's
//! manager (`legacy.rs`), to the legacy store (Atlantis's Redis), or, in `shadow`, to the legacy
//! store with every write repeated on elock and the answers compared.

use std::collections::BTreeMap;

use elock_atlantis::{CommandLock, LockKey, ProjectLock, APPLY_LOCK_RESOURCE};
use elock_core::error::Error;

use super::adapter::{Adapter, AdapterError, AdapterResult, TryLockResponse, LOCK_EXISTS, NO_LOCK};
use crate::migration::{AtlantisRedis, Migration};

pub struct Routed<'a> {
    pub elock: Adapter<'a>,
    pub migration: &'a Migration,
}

fn legacy_failed(e: String) -> AdapterError {
    AdapterError::Engine(Error::Storage(e))
}

/// How an answer is shown in a mismatch record: enough to tell who holds what.
fn show_lock(l: Option<&ProjectLock>) -> String {
    match l {
        Some(l) => format!("{}#{}", l.project.repo_full_name, l.pull.num),
        None => "none".into(),
    }
}

fn show<T>(r: &AdapterResult<T>, f: impl Fn(&T) -> String) -> String {
    match r {
        Ok(v) => f(v),
        Err(AdapterError::Atlantis(m)) => format!("error: {m}"),
        Err(AdapterError::Engine(e)) => format!("error: {e}"),
    }
}

impl Routed<'_> {
    /// The legacy store, if `key` goes there.
    fn legacy_for(&self, key: &str) -> Option<&AtlantisRedis> {
        let legacy = self.migration.legacy_in_use()?;
        let elock = self.migration.elock_serves(key);
        self.migration.served(elock);
        (!elock).then_some(legacy)
    }

    pub async fn try_lock(&self, lock: ProjectLock) -> AdapterResult<TryLockResponse> {
        let lock = lock.redacted();
        let key = LockKey::of(&lock).to_string();
        let Some(legacy) = self.legacy_for(&key) else {
            return self.elock.try_lock(lock).await;
        };
        let (acquired, curr) = legacy.try_lock(&lock).await.map_err(legacy_failed)?;
        if self.migration.shadowing() {
            let mirrored = self.elock.try_lock(lock).await;
            self.migration.compare(
                "try-lock",
                &key,
                format!("{acquired} {}", show_lock(Some(&curr))),
                show(&mirrored, |r| {
                    format!("{} {}", r.lock_acquired, show_lock(Some(&r.curr_lock)))
                }),
            );
        }
        Ok(TryLockResponse {
            lock_acquired: acquired,
            curr_lock: curr,
            lock_key: key,
        })
    }

    pub async fn unlock(&self, key: &str, pull: Option<i64>) -> AdapterResult<Option<ProjectLock>> {
        let Some(legacy) = self.legacy_for(key) else {
            // A lock taken in the legacy store before the split moved its key is still found.
            let got = self.elock.unlock(key, pull).await?;
            return match (got, self.migration.legacy_in_use()) {
                (None, Some(legacy)) if !self.migration.shadowing() => {
                    legacy.unlock(key, pull).await.map_err(legacy_failed)
                }
                (got, _) => Ok(got),
            };
        };
        let got = legacy.unlock(key, pull).await.map_err(legacy_failed)?;
        if self.migration.shadowing() {
            let mirrored = self.elock.unlock(key, pull).await;
            self.migration.compare(
                "unlock",
                key,
                show_lock(got.as_ref()),
                show(&mirrored, |m| show_lock(m.as_ref())),
            );
        } else if got.is_none() {
            return self.elock.unlock(key, pull).await;
        }
        Ok(got)
    }

    pub async fn unlock_by_pull(&self, repo: &str, pull: i64) -> AdapterResult<Vec<ProjectLock>> {
        let Some(legacy) = self.migration.legacy_in_use() else {
            return self.elock.unlock_by_pull(repo, pull).await;
        };
        let mut got = legacy
            .unlock_by_pull(repo, pull)
            .await
            .map_err(legacy_failed)?;
        let from_elock = self.elock.unlock_by_pull(repo, pull).await;
        if self.migration.shadowing() {
            let keys = |ls: &Vec<ProjectLock>| {
                let mut k: Vec<String> = ls.iter().map(|l| LockKey::of(l).to_string()).collect();
                k.sort();
                k.join(", ")
            };
            self.migration.compare(
                "unlock-by-pull",
                &format!("{repo}#{pull}"),
                keys(&got),
                show(&from_elock, keys),
            );
        } else {
            got.extend(from_elock?);
        }
        Ok(got)
    }

    pub async fn list(&self) -> AdapterResult<BTreeMap<String, ProjectLock>> {
        let Some(legacy) = self.migration.legacy_in_use() else {
            return self.elock.list().await;
        };
        let mut locks = legacy.list().await.map_err(legacy_failed)?;
        if !self.migration.shadowing() {
            locks.extend(self.elock.list().await?);
        }
        Ok(locks)
    }

    pub async fn get_lock(&self, key: &str) -> AdapterResult<Option<ProjectLock>> {
        let Some(legacy) = self.migration.legacy_in_use() else {
            return self.elock.get_lock(key).await;
        };
        let first_legacy = !self.migration.elock_serves(key);
        if first_legacy {
            if let Some(l) = legacy.get_lock(key).await.map_err(legacy_failed)? {
                return Ok(Some(l));
            }
        }
        if self.migration.shadowing() {
            return Ok(None);
        }
        match self.elock.get_lock(key).await? {
            Some(l) => Ok(Some(l)),
            None if !first_legacy => legacy.get_lock(key).await.map_err(legacy_failed),
            None => Ok(None),
        }
    }

    pub async fn lock_command(&self, unix_time: i64) -> AdapterResult<CommandLock> {
        let Some(legacy) = self.legacy_for(APPLY_LOCK_RESOURCE) else {
            return self.elock.lock_command(unix_time).await;
        };
        let got = match legacy.lock_command(unix_time).await {
            Ok(Some(l)) => Ok(l),
            Ok(None) => Err(AdapterError::Atlantis(LOCK_EXISTS)),
            Err(e) => return Err(legacy_failed(e)),
        };
        if self.migration.shadowing() {
            let mirrored = self.elock.lock_command(unix_time).await;
            self.migration.compare(
                "command-lock/lock",
                APPLY_LOCK_RESOURCE,
                show(&got, |_| "locked".into()),
                show(&mirrored, |_| "locked".into()),
            );
        }
        got
    }

    pub async fn unlock_command(&self) -> AdapterResult<()> {
        let Some(legacy) = self.legacy_for(APPLY_LOCK_RESOURCE) else {
            return self.elock.unlock_command().await;
        };
        let got = match legacy.unlock_command().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(AdapterError::Atlantis(NO_LOCK)),
            Err(e) => return Err(legacy_failed(e)),
        };
        if self.migration.shadowing() {
            let mirrored = self.elock.unlock_command().await;
            self.migration.compare(
                "command-lock/unlock",
                APPLY_LOCK_RESOURCE,
                show(&got, |_| "unlocked".into()),
                show(&mirrored, |_| "unlocked".into()),
            );
        }
        got
    }

    /// Who holds the lock at `key`: the lease's owner in elock, else `{repo}#{pull}` of
    /// Atlantis's record in the legacy store.
    pub async fn holder_owner(&self, key: &str) -> AdapterResult<Option<String>> {
        if let Some(lease) = self.elock.holder(key).await.ok().flatten() {
            return Ok(Some(lease.owner.to_string()));
        }
        Ok(self
            .get_lock(key)
            .await?
            .map(|l| elock_atlantis::owner_name(&l.project.repo_full_name, l.pull.num)))
    }

    pub async fn check_command(&self) -> AdapterResult<Option<CommandLock>> {
        match self.legacy_for(APPLY_LOCK_RESOURCE) {
            Some(legacy) => legacy.check_command().await.map_err(legacy_failed),
            None => self.elock.check_command().await,
        }
    }
}
