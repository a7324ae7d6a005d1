//! The wire types of elock's Atlantis adapter (`/api/atlantis/v1/...`, `/api/locks`): Atlantis's
//! own names and shapes, defined once for the server that answers and the client that calls.

use serde::{Deserialize, Serialize};

use crate::model::{Project, ProjectLock};

/// Atlantis's `TryLockResponse`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TryLockResponse {
    #[serde(rename = "LockAcquired")]
    pub lock_acquired: bool,
    /// The lock as it now stands: the caller's when acquired, the holder's otherwise.
    #[serde(rename = "CurrLock")]
    pub curr_lock: ProjectLock,
    #[serde(rename = "LockKey")]
    pub lock_key: String,
}

/// Which lock an unlock is about: `{"Key": ...}`, or Atlantis's `{"Project": {...},
/// "Workspace": ...}`; `PullNum` for unlock-if-owned-by-pull.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct KeyRequest {
    #[serde(rename = "Key", default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(rename = "Project", default, skip_serializing_if = "Option::is_none")]
    pub project: Option<Project>,
    #[serde(rename = "Workspace", default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<String>,
    #[serde(rename = "PullNum", default, skip_serializing_if = "Option::is_none")]
    pub pull_num: Option<i64>,
}

impl KeyRequest {
    pub fn key(key: impl Into<String>) -> Self {
        KeyRequest {
            key: Some(key.into()),
            ..KeyRequest::default()
        }
    }
}

/// Atlantis's UnlockByPull.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UnlockByPullRequest {
    #[serde(rename = "RepoFullName")]
    pub repo_full_name: String,
    #[serde(rename = "PullNum")]
    pub pull_num: i64,
}

/// Atlantis's LockCommand: `CommandName` 0 is apply, the only command with a global lock.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandRequest {
    #[serde(rename = "CommandName")]
    pub command_name: i64,
}

/// Atlantis's `GET /api/locks` answer: `Locks` is null, not `[]`, when there are none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiLocks {
    #[serde(rename = "Locks")]
    pub locks: Option<Vec<ApiLock>>,
}

/// One row of `GET /api/locks`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiLock {
    #[serde(rename = "Name")]
    pub name: String,
    #[serde(rename = "ProjectName")]
    pub project_name: String,
    #[serde(rename = "ProjectRepo")]
    pub project_repo: String,
    #[serde(rename = "ProjectRepoPath")]
    pub project_repo_path: String,
    #[serde(rename = "PullID")]
    pub pull_id: String,
    #[serde(rename = "PullURL")]
    pub pull_url: String,
    #[serde(rename = "User")]
    pub user: String,
    #[serde(rename = "Workspace")]
    pub workspace: String,
    #[serde(rename = "Time")]
    pub time: crate::GoTime,
}

/// How Atlantis's lock calls are split between Atlantis's own store and elock (`migration.mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MigrationMode {
    /// Everything in elock; no other store is read.
    #[default]
    Off,
    /// Atlantis's store answers; elock mirrors every call and the answers are compared.
    Shadow,
    /// A stable share of lock keys (`traffic-percentage`) is served by elock, the rest by
    /// Atlantis's store.
    Split,
    /// elock answers; Atlantis's store is only read for locks taken before the switch.
    Enhanced,
}

impl MigrationMode {
    pub fn name(self) -> &'static str {
        match self {
            MigrationMode::Off => "off",
            MigrationMode::Shadow => "shadow",
            MigrationMode::Split => "split",
            MigrationMode::Enhanced => "enhanced",
        }
    }
}

/// One difference between Atlantis's store's answer and elock's, in `shadow` mode.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mismatch {
    pub operation: String,
    pub key: String,
    pub legacy: String,
    pub elock: String,
}

/// What the migration has done since the server started.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationStats {
    pub served_by_legacy: u64,
    pub served_by_elock: u64,
    pub compared: u64,
    pub mismatches: u64,
    /// The most recent differences (at most 100).
    pub recent: std::collections::VecDeque<Mismatch>,
}

/// `GET /api/atlantis/v1/migration`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct MigrationReport {
    pub mode: MigrationMode,
    pub traffic_percentage: u8,
    pub validation_enabled: bool,
    /// Whether Atlantis's store is connected.
    pub legacy_store: bool,
    pub stats: MigrationStats,
}
