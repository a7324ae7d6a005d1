//! Atlantis's lock model (`server/events/models`, v0.47), field for field.
//!
//! Go writes these with encoding/json and no tags: Go field names in declaration order, enums as
//! integers, `time.Time` as RFC 3339 with nanoseconds, nil slices as `null`. Reading is tolerant:
//! a missing field takes Go's zero value (older Atlantis versions lack `ProjectName`, `Teams`,
//! `Body`, `HardenedNonPRRefCheckout`), and unknown fields (a newer Atlantis) are kept and written
//! back after the known ones, so nothing is lost passing through elock.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::gotime::GoTime;

/// A project lock: what Atlantis stores under `runLocks` / `pr/{key}`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProjectLock {
    #[serde(rename = "Project")]
    pub project: Project,
    #[serde(rename = "Pull")]
    pub pull: PullRequest,
    #[serde(rename = "User")]
    pub user: User,
    #[serde(rename = "Workspace")]
    pub workspace: String,
    #[serde(rename = "Time")]
    pub time: GoTime,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Project {
    #[serde(rename = "ProjectName")]
    pub project_name: String,
    #[serde(rename = "RepoFullName")]
    pub repo_full_name: String,
    /// Relative to the repository root: `.` for the root, never a trailing `/`.
    #[serde(rename = "Path")]
    pub path: String,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PullRequest {
    #[serde(rename = "Num")]
    pub num: i64,
    #[serde(rename = "HeadCommit")]
    pub head_commit: String,
    #[serde(rename = "URL")]
    pub url: String,
    #[serde(rename = "HeadBranch")]
    pub head_branch: String,
    #[serde(rename = "BaseBranch")]
    pub base_branch: String,
    #[serde(rename = "HardenedNonPRRefCheckout")]
    pub hardened_non_pr_ref_checkout: bool,
    #[serde(rename = "Author")]
    pub author: String,
    #[serde(rename = "Body")]
    pub body: String,
    /// 0 open, 1 closed.
    #[serde(rename = "State")]
    pub state: i64,
    #[serde(rename = "BaseRepo")]
    pub base_repo: Repo,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Repo {
    #[serde(rename = "FullName")]
    pub full_name: String,
    #[serde(rename = "Owner")]
    pub owner: String,
    #[serde(rename = "Name")]
    pub name: String,
    /// Carries the VCS user and token: redact before showing (see [`crate::redact`]).
    #[serde(rename = "CloneURL")]
    pub clone_url: String,
    #[serde(rename = "SanitizedCloneURL")]
    pub sanitized_clone_url: String,
    #[serde(rename = "VCSHost")]
    pub vcs_host: VcsHost,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct VcsHost {
    #[serde(rename = "Hostname")]
    pub hostname: String,
    /// 0 GitHub, 1 GitLab, 2 Bitbucket Cloud, 3 Bitbucket Server, 4 Azure DevOps, 5 Gitea.
    #[serde(rename = "Type")]
    pub kind: i64,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct User {
    #[serde(rename = "Username")]
    pub username: String,
    /// `None` is Go's nil slice (`null`); `Some(vec![])` an empty one (`[]`).
    #[serde(rename = "Teams")]
    pub teams: Option<Vec<String>>,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

/// The global command lock (`globalLocks` / `global/apply/lock`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CommandLock {
    #[serde(rename = "LockMetadata")]
    pub lock_metadata: LockMetadata,
    /// 0 = apply.
    #[serde(rename = "CommandName")]
    pub command_name: i64,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LockMetadata {
    #[serde(rename = "UnixTime")]
    pub unix_time: i64,
    #[serde(flatten)]
    pub unknown: Map<String, Value>,
}

impl ProjectLock {
    /// The lock pull request `pull` of `repo` takes on `path` in `workspace`, by `user`
    /// (GitHub's pull URL; every other field Go's zero value).
    pub fn of_pull(repo: &str, path: &str, workspace: &str, pull: i64, user: &str) -> ProjectLock {
        ProjectLock {
            project: Project {
                repo_full_name: repo.into(),
                path: path.into(),
                ..Project::default()
            },
            pull: PullRequest {
                num: pull,
                url: format!("https://github.com/{repo}/pull/{pull}"),
                ..PullRequest::default()
            },
            user: User {
                username: user.into(),
                ..User::default()
            },
            workspace: workspace.into(),
            ..ProjectLock::default()
        }
    }

    /// The lock Atlantis is shown for a lease elock holds on Atlantis's key `key` that Atlantis
    /// did not take (the CLI, `elock run`, the native API): the project from the key, the pull
    /// request from an owner `{repo}#{N}` of the key's repository, else pull 0 and the owner as
    /// the user, marked `(elock)`, so that Atlantis's locks page names who holds it. `None` when
    /// `key` is not shaped like Atlantis's key.
    pub fn standing_for(key: &str, owner: &str, unix_millis: u64) -> Option<ProjectLock> {
        let k = crate::LockKey::parse(key).ok()?;
        let pull = owner
            .rsplit_once('#')
            .filter(|(repo, _)| *repo == k.repo)
            .and_then(|(_, n)| n.parse::<i64>().ok());
        let user = match pull {
            Some(_) => owner.to_string(),
            None => format!("{owner} (elock)"),
        };
        let mut lock =
            ProjectLock::of_pull(&k.repo, &k.path, &k.workspace, pull.unwrap_or(0), &user);
        if pull.is_none() {
            lock.pull.url = String::new();
        }
        lock.project.project_name = k.project.unwrap_or_default();
        lock.pull.base_repo.full_name = k.repo;
        lock.time = crate::GoTime::from_unix_millis(unix_millis);
        Some(lock)
    }

    /// Parses Atlantis's JSON (any version; see the module notes).
    pub fn from_json(bytes: &[u8]) -> Result<ProjectLock, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    /// The JSON exactly as Atlantis (Go) writes it.
    pub fn to_go_json(&self) -> Vec<u8> {
        crate::gojson::to_vec(self)
    }
}

impl CommandLock {
    pub fn from_json(bytes: &[u8]) -> Result<CommandLock, serde_json::Error> {
        serde_json::from_slice(bytes)
    }

    pub fn to_go_json(&self) -> Vec<u8> {
        crate::gojson::to_vec(self)
    }
}
