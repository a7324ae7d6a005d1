//! Atlantis compatibility (SPEC 8): Atlantis's lock model serialised exactly as Go's
//! encoding/json writes it, its lock keys, and a read-only reader of its bbolt file.

pub mod bolt;
pub mod gojson;
pub mod gotime;
pub mod keys;
pub mod model;
pub mod redact;
pub mod repo_config;

pub use gotime::GoTime;
pub use keys::LockKey;
pub use model::{
    CommandLock, LockMetadata, Project, ProjectLock, PullRequest, Repo, User, VcsHost,
};
