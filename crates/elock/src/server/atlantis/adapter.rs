//! Atlantis's lock storage (`db.Database` in Atlantis v0.47) on elock's manager.
//!
//! An Atlantis project lock is a lease on the resource named by its key, owned by
//! `{RepoFullName}#{Pull.Num}`, with no expiry and the ProjectLock JSON in `metadata.atlantis`
//! (docs/atlantis.md). The global apply lock is a lease on `global/apply/lock`. Each method behaves as the
//! conformance list of `reference/atlantis.md` says, with Atlantis's bugs fixed: unlock-by-pull
//! matches the repository exactly, and try-lock is atomic (it is elock's acquire).

use std::collections::BTreeMap;

use elock_atlantis::{
    owner_name, CommandLock, LockKey, LockMetadata, ProjectLock, APPLY_LOCK_OWNER as APPLY_OWNER,
    APPLY_LOCK_RESOURCE as APPLY_LOCK,
};
use elock_core::error::Error;
use elock_core::manager::{LockRequest, Manager, Ttl};
use elock_core::model::{Lease, Metadata, Owner, ResourceName};
use elock_core::table::{Acquired, LeaseFilter};
use serde::Deserialize;
use serde_json::{json, Value};

pub const LOCK_EXISTS: &str = "db transaction failed: lock already exists";
pub const NO_LOCK: &str = "db transaction failed: no lock exists";

/// What a legacy call can fail with.
#[derive(Debug)]
pub enum AdapterError {
    /// Atlantis's own error message (409).
    Atlantis(&'static str),
    Engine(Error),
}

impl From<Error> for AdapterError {
    fn from(e: Error) -> Self {
        AdapterError::Engine(e)
    }
}

pub type AdapterResult<T> = Result<T, AdapterError>;

pub use elock_atlantis::adapter::TryLockResponse;

fn owner_of(repo: &str, pull: i64) -> Result<Owner, Error> {
    Owner::new(&owner_name(repo, pull))
}

/// A try-lock carrying Atlantis's JSON in `metadata.atlantis`: without expiry (Atlantis's locks
/// never expire, no setting is needed for that) unless the resource's policy gives a ttl.
fn atlantis_request(owner: Owner, key: &str, atlantis: Value) -> Result<LockRequest, Error> {
    Ok(LockRequest {
        owner,
        resources: vec![resource(key)?],
        // Priority and ttl from the resource's policy; Atlantis's try-lock never waits.
        priority: None,
        ttl: Ttl::Default,
        wait: Some(std::time::Duration::ZERO),
        detach: false,
        metadata: Some(Metadata::new(json!({ "atlantis": atlantis }))?),
        reentry: Default::default(),
        for_atlantis: true,
    })
}

fn resource(key: &str) -> Result<ResourceName, Error> {
    ResourceName::new(key)
}

/// The Atlantis lock a lease stands for: its metadata, or one made up from the lease when elock
/// itself holds the resource (so that Atlantis sees who holds it).
pub fn project_lock_of(lease: &Lease, key: &str) -> ProjectLock {
    if let Some(l) = lease
        .metadata
        .as_ref()
        .and_then(|m| m.as_map().get("atlantis"))
        .and_then(|v| ProjectLock::deserialize(v).ok())
        .filter(|l| !l.project.repo_full_name.is_empty())
    {
        return l.redacted();
    }
    // The lock Atlantis is shown for it where elock shares Redis with Atlantis too.
    ProjectLock::standing_for(key, lease.owner.as_str(), lease.acquired_at.as_millis())
        .unwrap_or_default()
}

/// Whether a lease is one of Atlantis's project locks (not the apply lock, not elock's own).
fn is_project_lock(lease: &Lease) -> bool {
    lease
        .metadata
        .as_ref()
        .and_then(|m| m.as_map().get("atlantis"))
        .is_some_and(|v| v.get("Project").is_some())
}

pub struct Adapter<'a> {
    pub manager: &'a Manager,
}

impl Adapter<'_> {
    /// The lease holding `key`, if any.
    pub async fn holder(&self, key: &str) -> AdapterResult<Option<Lease>> {
        Ok(self.manager.resource(resource(key)?).await?.holder)
    }

    /// Stores the lock if its key is free: `(true, lock)`; else `(false, the lock there)`, never
    /// overwritten (also when the same pull holds it: the caller decides what that means).
    /// The lock is stored without the credentials of its `CloneURL` (Atlantis sends its VCS
    /// token there; elock never needs it), so no answer, event, audit record or export can show
    /// them.
    pub async fn try_lock(&self, lock: ProjectLock) -> AdapterResult<TryLockResponse> {
        let lock = lock.redacted();
        let key = LockKey::of(&lock).to_string();
        let value = serde_json::to_value(&lock).map_err(|e| Error::Internal(e.to_string()))?;
        let req = atlantis_request(
            owner_of(&lock.project.repo_full_name, lock.pull.num)?,
            &key,
            value,
        )?;
        let (acquired, curr) = match self.manager.acquire(req).await {
            Ok(Acquired::Granted {
                reentrant: false, ..
            }) => (true, lock),
            Ok(Acquired::Granted { lease, .. }) => (false, project_lock_of(&lease, &key)),
            Ok(Acquired::Queued { .. }) => {
                return Err(Error::Internal("a try-lock was queued".into()).into())
            }
            Err(Error::Locked {
                holder: Some(h), ..
            }) => (false, project_lock_of(&h, &key)),
            Err(Error::Locked { holder: None, .. }) => (false, ProjectLock::default()),
            Err(e) => return Err(e.into()),
        };
        Ok(TryLockResponse {
            lock_acquired: acquired,
            curr_lock: curr,
            lock_key: key,
        })
    }

    /// Deletes the lock at `key` if `pull` (when given) holds it; returns what was deleted.
    pub async fn unlock(&self, key: &str, pull: Option<i64>) -> AdapterResult<Option<ProjectLock>> {
        for _ in 0..3 {
            let Some(lease) = self.holder(key).await? else {
                return Ok(None);
            };
            let lock = project_lock_of(&lease, key);
            if pull.is_some_and(|p| p != lock.pull.num) {
                return Ok(None);
            }
            match self.manager.release(lease.id).await {
                Ok(_) => return Ok(Some(lock)),
                // Released or replaced meanwhile: look again.
                Err(Error::NotFound { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(None)
    }

    /// Every lock of exactly this repository and pull (Atlantis matched the key prefix, so
    /// `owner/repo` also took `owner/repo2`'s locks).
    pub async fn unlock_by_pull(&self, repo: &str, pull: i64) -> AdapterResult<Vec<ProjectLock>> {
        let filter = LeaseFilter {
            owner: Some(owner_of(repo, pull)?),
            ..LeaseFilter::default()
        };
        let mut out = Vec::new();
        for lease in self.manager.list(filter).await? {
            if !is_project_lock(&lease) {
                continue;
            }
            let key = lease.resources[0].resource.to_string();
            let lock = project_lock_of(&lease, &key);
            if lock.project.repo_full_name != repo || lock.pull.num != pull {
                continue;
            }
            match self.manager.release(lease.id).await {
                Ok(_) => out.push(lock),
                Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// Every project lock by key (command locks are not listed).
    pub async fn list(&self) -> AdapterResult<BTreeMap<String, ProjectLock>> {
        let mut out = BTreeMap::new();
        for lease in self.manager.list(LeaseFilter::default()).await? {
            if is_project_lock(&lease) {
                let key = lease.resources[0].resource.to_string();
                out.insert(key.clone(), project_lock_of(&lease, &key));
            }
        }
        Ok(out)
    }

    /// The lock at `key`; a legacy three-part key finds the lock it was written for.
    pub async fn get_lock(&self, key: &str) -> AdapterResult<Option<ProjectLock>> {
        if let Ok(r) = resource(key) {
            if let Some(lease) = self.manager.resource(r).await?.holder {
                return Ok(Some(project_lock_of(&lease, key)));
            }
        }
        Ok(self
            .list()
            .await?
            .into_values()
            .find(|l| LockKey::of(l).legacy().to_string() == key))
    }

    pub async fn lock_command(&self, unix_time: i64) -> AdapterResult<CommandLock> {
        let lock = CommandLock {
            lock_metadata: LockMetadata {
                unix_time,
                ..LockMetadata::default()
            },
            command_name: 0,
            ..CommandLock::default()
        };
        let value = serde_json::from_slice::<Value>(&lock.to_go_json())
            .map_err(|e| Error::Internal(e.to_string()))?;
        let req = atlantis_request(Owner::new(APPLY_OWNER)?, APPLY_LOCK, value)?;
        match self.manager.acquire(req).await {
            Ok(Acquired::Granted {
                reentrant: false, ..
            }) => Ok(lock),
            Ok(_) | Err(Error::Locked { .. }) => Err(AdapterError::Atlantis(LOCK_EXISTS)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn unlock_command(&self) -> AdapterResult<()> {
        let Some(lease) = self.holder(APPLY_LOCK).await? else {
            return Err(AdapterError::Atlantis(NO_LOCK));
        };
        match self.manager.release(lease.id).await {
            Ok(_) => Ok(()),
            Err(Error::NotFound { .. }) => Err(AdapterError::Atlantis(NO_LOCK)),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn check_command(&self) -> AdapterResult<Option<CommandLock>> {
        Ok(self.holder(APPLY_LOCK).await?.map(|lease| {
            lease
                .metadata
                .as_ref()
                .and_then(|m| m.as_map().get("atlantis"))
                .and_then(|v| CommandLock::deserialize(v).ok())
                .unwrap_or_else(|| CommandLock {
                    lock_metadata: LockMetadata {
                        unix_time: (lease.acquired_at.as_millis() / 1000) as i64,
                        ..LockMetadata::default()
                    },
                    ..CommandLock::default()
                })
        }))
    }
}
