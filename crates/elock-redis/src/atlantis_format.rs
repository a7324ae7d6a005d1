//! Atlantis's own Redis keys and values, as elock writes and reads them beside its own (see
//! `atlantis_watch.rs` for when): pure functions, no Redis.

use elock_atlantis::{
    owner_name, CommandLock, LockKey, LockMetadata, ProjectLock, APPLY_LOCK_OWNER,
    APPLY_LOCK_RESOURCE,
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

/// What Atlantis must find at its keys while a lease of `owner` on `resources` lasts: for each
/// resource that is an Atlantis key (a project lock key, or the apply lock), the JSON Atlantis
/// reads there, as an object `{resource: json}`; `None` when no resource is one. Whatever took
/// the lease, Atlantis sees it: the lock in `metadata.atlantis` when it is this resource's
/// (the adapter's, an import's, `elock atlantis run`'s), else one standing for the lease
/// ([`ProjectLock::standing_for`]).
pub fn mirror_values(
    resources: &[ResourceName],
    owner: &str,
    metadata: Option<&Metadata>,
    now_millis: u64,
) -> Option<Value> {
    let atlantis = metadata.and_then(|m| m.as_map().get("atlantis"));
    let own = atlantis
        .and_then(|v| serde_json::from_value::<ProjectLock>(v.clone()).ok())
        .filter(|l| !l.project.repo_full_name.is_empty());
    let mut out = serde_json::Map::new();
    for resource in resources {
        let r = resource.as_str();
        let bytes = if r == APPLY_LOCK_RESOURCE {
            atlantis
                .and_then(|v| serde_json::from_value::<CommandLock>(v.clone()).ok())
                .unwrap_or_else(|| CommandLock {
                    lock_metadata: LockMetadata {
                        unix_time: (now_millis / 1000) as i64,
                        ..LockMetadata::default()
                    },
                    ..CommandLock::default()
                })
                .to_go_json()
        } else {
            let lock = match &own {
                // A single-resource lease carries its own lock; so does a resource whose key
                // is the lock's.
                Some(l) if resources.len() == 1 || LockKey::of(l).to_string() == r => l.redacted(),
                _ => match ProjectLock::standing_for(r, owner, now_millis) {
                    Some(l) => l,
                    None => continue,
                },
            };
            lock.to_go_json()
        };
        if let Ok(text) = String::from_utf8(bytes) {
            out.insert(r.to_string(), Value::String(text));
        }
    }
    (!out.is_empty()).then_some(Value::Object(out))
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

#[cfg(test)]
mod tests {
    use super::*;

    fn names(r: &[&str]) -> Vec<ResourceName> {
        r.iter().map(|r| ResourceName::new(r).unwrap()).collect()
    }

    fn lock_at(values: &Value, r: &str) -> ProjectLock {
        ProjectLock::from_json(values[r].as_str().unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn every_atlantis_key_of_a_lease_gets_a_lock_atlantis_can_show() {
        // A lease taken outside Atlantis by a pull's owner: Atlantis sees that pull.
        let v = mirror_values(
            &names(&["acme/infra/envs/prod/default/", "not/an/atlantis-key"]),
            "acme/infra#42",
            None,
            1_700_000_000_000,
        )
        .unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "{v}");
        let l = lock_at(&v, "acme/infra/envs/prod/default/");
        assert_eq!(
            (
                l.pull.num,
                l.project.repo_full_name.as_str(),
                l.project.path.as_str()
            ),
            (42, "acme/infra", "envs/prod")
        );
        assert_eq!(LockKey::of(&l).to_string(), "acme/infra/envs/prod/default/");
        // Any other owner: pull 0, and the owner named as the user.
        let v = mirror_values(&names(&["acme/infra/./default/app"]), "ci-deploy", None, 0).unwrap();
        let l = lock_at(&v, "acme/infra/./default/app");
        assert_eq!(
            (l.pull.num, l.user.username.as_str()),
            (0, "ci-deploy (elock)")
        );
        assert_eq!(l.project.project_name, "app");
        // A pull number of another repository is not this repository's pull.
        let v = mirror_values(&names(&["acme/infra/./default/"]), "acme/other#7", None, 0).unwrap();
        assert_eq!(lock_at(&v, "acme/infra/./default/").pull.num, 0);
        // Four parts or fewer: not Atlantis's.
        assert_eq!(
            mirror_values(&names(&["bench-1/u/3/9"]), "x", None, 0),
            None
        );
        // The apply lock is Atlantis's too.
        let v = mirror_values(&names(&[APPLY_LOCK_RESOURCE]), "atlantis", None, 5_000).unwrap();
        assert!(
            v[APPLY_LOCK_RESOURCE]
                .as_str()
                .unwrap()
                .contains("\"UnixTime\":5"),
            "{v}"
        );
    }

    #[test]
    fn a_lease_carrying_atlantiss_lock_writes_that_lock() {
        let mut lock = ProjectLock::of_pull("acme/infra", "envs/prod", "default", 9, "alice");
        lock.pull.url = "https://example.test/pull/9".into();
        let meta = Metadata::new(json!({ "atlantis": lock })).unwrap();
        let v = mirror_values(
            &names(&["acme/infra/envs/prod/default/"]),
            "acme/infra#9",
            Some(&meta),
            0,
        )
        .unwrap();
        assert_eq!(
            lock_at(&v, "acme/infra/envs/prod/default/"),
            lock.redacted()
        );
    }
}
