//! Atlantis's own Redis keys and values, as elock writes and reads them beside its own (see
//! `atlantis_watch.rs` for when): pure functions, no Redis.

use elock_atlantis::{
    owner_name, CommandLock, LockMetadata, ProjectLock, APPLY_LOCK_OWNER, APPLY_LOCK_RESOURCE,
};
use elock_core::model::{Metadata, Owner, ResourceName};
use serde_json::{json, Value};

/// Atlantis's key for the lock on `resource`.
pub fn atlantis_key(resource: &str) -> String {
    if resource == APPLY_LOCK_RESOURCE {
        resource.to_string()
    } else {
        format!("pr/{resource}")
    }
}

/// The JSON Atlantis expects at its key while a lease on `resources` lasts, if the lease is one
/// Atlantis should see: one resource, and Atlantis's lock in `metadata.atlantis` (or the apply
/// lock, described by a command lock taken at `now_unix`).
pub fn mirror_value(
    resources: &[ResourceName],
    metadata: Option<&Metadata>,
    now_unix: i64,
) -> Option<String> {
    let [resource] = resources else {
        return None;
    };
    let atlantis = metadata.and_then(|m| m.as_map().get("atlantis"));
    let bytes = if resource.as_str() == APPLY_LOCK_RESOURCE {
        atlantis
            .and_then(|v| serde_json::from_value::<CommandLock>(v.clone()).ok())
            .unwrap_or_else(|| CommandLock {
                lock_metadata: LockMetadata {
                    unix_time: now_unix,
                    ..LockMetadata::default()
                },
                ..CommandLock::default()
            })
            .to_go_json()
    } else {
        let lock = serde_json::from_value::<ProjectLock>(atlantis?.clone()).ok()?;
        if lock.project.repo_full_name.is_empty() {
            return None;
        }
        lock.redacted().to_go_json()
    };
    String::from_utf8(bytes).ok()
}

/// Who holds a lock Atlantis wrote, in elock's terms, and its metadata (credentials removed).
pub fn adoption(resource: &str, value: &[u8]) -> (Owner, Value) {
    let atlantis = Owner::new(APPLY_LOCK_OWNER).expect("a valid owner");
    if resource == APPLY_LOCK_RESOURCE {
        return match CommandLock::from_json(value) {
            Ok(c) => (atlantis, json!({ "atlantis": c })),
            Err(e) => (atlantis, unreadable(e)),
        };
    }
    match ProjectLock::from_json(value) {
        Ok(lock) => {
            let owner = Owner::new(&owner_name(&lock.project.repo_full_name, lock.pull.num))
                .unwrap_or(atlantis);
            (owner, json!({ "atlantis": lock.redacted() }))
        }
        Err(e) => (atlantis, unreadable(e)),
    }
}

/// An Atlantis key elock cannot read is still Atlantis's lock: held, with the reason kept.
fn unreadable(e: serde_json::Error) -> Value {
    json!({ "atlantis-unreadable": format!("Atlantis's JSON could not be read: {e}") })
}
