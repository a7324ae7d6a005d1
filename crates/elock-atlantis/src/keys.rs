//! Atlantis's lock keys: `{RepoFullName}/{Path}/{Workspace}/{ProjectName}` since v0.40 (an empty
//! project name leaves a trailing `/`), `{RepoFullName}/{Path}/{Workspace}` before. No VCS host.
//!
//! A key alone is ambiguous: repository names can have more than two segments (GitLab
//! subgroups: `group/sub/repo`) and paths can be nested. Atlantis parses keys with
//! `^(.*?\/.*?)\/(.*)\/(.*)\/(.*)$`, which takes the first two segments as the repository;
//! [`LockKey::parse`] does the same (so a key means what it means to Atlantis), and
//! [`LockKey::parse_for_repo`] uses a known repository instead. The authoritative key of a
//! stored lock is always [`LockKey::of`] its value.

use std::fmt;

use crate::model::ProjectLock;

#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LockKey {
    pub repo: String,
    pub path: String,
    pub workspace: String,
    /// `None`: a legacy three-part key.
    pub project: Option<String>,
}

/// Atlantis's message for a key that does not parse.
pub const INVALID_KEY: &str = "invalid key format";

impl LockKey {
    /// The current-format key of a lock.
    pub fn of(lock: &ProjectLock) -> LockKey {
        LockKey {
            repo: lock.project.repo_full_name.clone(),
            path: lock.project.path.clone(),
            workspace: lock.workspace.clone(),
            project: Some(lock.project.project_name.clone()),
        }
    }

    /// The same lock's key as Atlantis wrote it before v0.40.
    pub fn legacy(&self) -> LockKey {
        LockKey {
            project: None,
            ..self.clone()
        }
    }

    /// A four-part key the way Atlantis's regex reads it: the repository is the first two
    /// segments, the workspace and project the last two, the path everything between.
    pub fn parse(key: &str) -> Result<LockKey, String> {
        let first = key.find('/').ok_or(INVALID_KEY)?;
        let second = key[first + 1..]
            .find('/')
            .map(|i| first + 1 + i)
            .ok_or(INVALID_KEY)?;
        Self::split_rest(&key[..second], &key[second + 1..]).ok_or_else(|| INVALID_KEY.into())
    }

    /// A key of a known repository: four parts, or three (legacy) when `legacy` is set.
    pub fn parse_for_repo(key: &str, repo: &str, legacy: bool) -> Result<LockKey, String> {
        let rest = key
            .strip_prefix(repo)
            .and_then(|r| r.strip_prefix('/'))
            .ok_or_else(|| format!("key {key:?} is not of repository {repo:?}"))?;
        if legacy {
            let (path, workspace) = rest.rsplit_once('/').ok_or(INVALID_KEY)?;
            return Ok(LockKey {
                repo: repo.into(),
                path: path.into(),
                workspace: workspace.into(),
                project: None,
            });
        }
        Self::split_rest(repo, rest).ok_or_else(|| INVALID_KEY.into())
    }

    /// `path/workspace/project` (path greedy, possibly with slashes).
    fn split_rest(repo: &str, rest: &str) -> Option<LockKey> {
        let (head, project) = rest.rsplit_once('/')?;
        let (path, workspace) = head.rsplit_once('/')?;
        Some(LockKey {
            repo: repo.into(),
            path: path.into(),
            workspace: workspace.into(),
            project: Some(project.into()),
        })
    }
}

impl fmt::Display for LockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.repo, self.path, self.workspace)?;
        match &self.project {
            Some(p) => write!(f, "/{p}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Project;

    fn lock(repo: &str, path: &str, ws: &str, name: &str) -> ProjectLock {
        ProjectLock {
            project: Project {
                project_name: name.into(),
                repo_full_name: repo.into(),
                path: path.into(),
                ..Project::default()
            },
            workspace: ws.into(),
            ..ProjectLock::default()
        }
    }

    #[test]
    fn keys_of_locks() {
        let cases = [
            (
                lock("owner/repo", ".", "default", ""),
                "owner/repo/./default/",
            ),
            (
                lock("owner/repo", "parent/child", "default", "app"),
                "owner/repo/parent/child/default/app",
            ),
            (
                lock("group/sub/repo", "envs/prod", "default", ""),
                "group/sub/repo/envs/prod/default/",
            ),
            (
                lock("acme/infra", "modules/vpc en", "staging", "é"),
                "acme/infra/modules/vpc en/staging/é",
            ),
        ];
        for (l, key) in cases {
            let k = LockKey::of(&l);
            assert_eq!(k.to_string(), key);
            assert_eq!(
                LockKey::parse_for_repo(key, &l.project.repo_full_name, false).unwrap(),
                k
            );
        }
        assert_eq!(
            LockKey::of(&lock("owner/repo", "parent/child", "default", "app"))
                .legacy()
                .to_string(),
            "owner/repo/parent/child/default"
        );
    }

    #[test]
    fn parse_reads_keys_as_atlantis_does() {
        let k = LockKey::parse("owner/repo/parent/child/default/app").unwrap();
        assert_eq!(
            (
                k.repo.as_str(),
                k.path.as_str(),
                k.workspace.as_str(),
                k.project.as_deref()
            ),
            ("owner/repo", "parent/child", "default", Some("app"))
        );
        let k = LockKey::parse("owner/repo/./default/").unwrap();
        assert_eq!((k.path.as_str(), k.project.as_deref()), (".", Some("")));
        // Atlantis's reading of a subgroup key: ambiguous, but it rebuilds the same key.
        let k = LockKey::parse("group/sub/repo/./default/").unwrap();
        assert_eq!((k.repo.as_str(), k.path.as_str()), ("group/sub", "repo/."));
        assert_eq!(k.to_string(), "group/sub/repo/./default/");
        for bad in [
            "",
            "owner",
            "owner/repo",
            "owner/repo/default",
            "owner/repo/path/default",
        ] {
            assert_eq!(LockKey::parse(bad).unwrap_err(), INVALID_KEY, "{bad}");
        }
        let legacy =
            LockKey::parse_for_repo("owner/repo/parent/child/default", "owner/repo", true).unwrap();
        assert_eq!(
            (legacy.path.as_str(), legacy.workspace.as_str()),
            ("parent/child", "default")
        );
        assert!(LockKey::parse_for_repo("other/repo/./default/", "owner/repo", false).is_err());
    }
}
