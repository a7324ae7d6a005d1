//! Atlantis compatibility (docs/atlantis.md): Atlantis's lock model serialised exactly as Go's
//! encoding/json writes it, its lock keys, and a read-only reader of its bbolt file.

pub mod adapter;
pub mod bolt;
pub mod gojson;
pub mod gotime;
pub mod keys;
pub mod model;
pub mod redact;
pub mod repo_config;
pub mod yaml;

pub use gotime::GoTime;

/// elock's resource for Atlantis's global apply lock (Atlantis's Redis key too).
pub const APPLY_LOCK_RESOURCE: &str = "global/apply/lock";
/// Who holds the apply lock in elock (Atlantis does not record it).
pub const APPLY_LOCK_OWNER: &str = "atlantis";

/// elock's owner for the locks of pull request `pull` of `repo`.
pub fn owner_name(repo: &str, pull: i64) -> String {
    format!("{repo}#{pull}")
}
pub use keys::LockKey;
pub use model::{
    CommandLock, LockMetadata, Project, ProjectLock, PullRequest, Repo, User, VcsHost,
};
