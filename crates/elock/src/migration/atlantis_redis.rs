//! Atlantis's own lock storage on Redis (`pr/{key}` → ProjectLock JSON, `global/apply/lock`),
//! with Atlantis's semantics (db.Database) and without its Redis bugs: try-lock is one
//! `SET NX` (Atlantis: GET then SET), deletes compare the value they read (nothing written
//! meanwhile is lost), unlock-by-pull matches the repository exactly and escapes glob
//! characters in its scan (Atlantis: `pr/{repo}*` unescaped), and listing scans `pr/*` (Atlantis:
//! `pr*`). The legacy store of the migration modes (`migration.legacy-redis`), and one side of
//! `elock compare-backends` and `elock validate-consistency`. Single node only, as Atlantis.

use std::collections::BTreeMap;

use elock_atlantis::{CommandLock, LockKey, LockMetadata, ProjectLock, APPLY_LOCK_RESOURCE};
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};

/// Compare-and-delete: deletes KEYS[1] only if it still holds ARGV[1].
const DELETE_IF: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

pub struct AtlantisRedis {
    conn: ConnectionManager,
    delete_if: Script,
}

pub type Result<T> = std::result::Result<T, String>;

fn failed(e: redis::RedisError) -> String {
    format!("Atlantis's Redis: {e}")
}

/// `s` with Redis glob characters escaped, for a MATCH pattern.
pub fn escape_glob(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

impl AtlantisRedis {
    /// Connects to `url` (`redis://host:port/db`).
    pub async fn connect(url: &str) -> Result<AtlantisRedis> {
        let client = redis::Client::open(url).map_err(failed)?;
        let conn = ConnectionManager::new(client).await.map_err(failed)?;
        Ok(AtlantisRedis {
            conn,
            delete_if: Script::new(DELETE_IF),
        })
    }

    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.conn().get(key).await.map_err(failed)
    }

    async fn delete_if(&self, key: &str, value: &[u8]) -> Result<bool> {
        let n: i64 = self
            .delete_if
            .key(key)
            .arg(value)
            .invoke_async(&mut self.conn())
            .await
            .map_err(failed)?;
        Ok(n == 1)
    }

    async fn scan(&self, pattern: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut self.conn())
                .await
                .map_err(failed)?;
            out.extend(keys);
            if next == 0 {
                out.sort();
                out.dedup();
                return Ok(out);
            }
            cursor = next;
        }
    }

    /// Stores the lock if its key is free: `(true, lock)`, else `(false, the lock there)`.
    pub async fn try_lock(&self, lock: &ProjectLock) -> Result<(bool, ProjectLock)> {
        let key = format!("pr/{}", LockKey::of(lock));
        for _ in 0..3 {
            let set: Option<String> = redis::cmd("SET")
                .arg(&key)
                .arg(lock.to_go_json())
                .arg("NX")
                .query_async(&mut self.conn())
                .await
                .map_err(failed)?;
            if set.is_some() {
                return Ok((true, lock.clone()));
            }
            if let Some(v) = self.get(&key).await? {
                return Ok((false, parse(&v)?));
            }
        }
        Err(format!("{key} kept changing while being locked"))
    }

    /// Deletes the lock at `key` if `pull` (when given) holds it; returns what was deleted.
    pub async fn unlock(&self, key: &str, pull: Option<i64>) -> Result<Option<ProjectLock>> {
        let k = format!("pr/{key}");
        let Some(v) = self.get(&k).await? else {
            return Ok(None);
        };
        let lock = parse(&v)?;
        if pull.is_some_and(|p| p != lock.pull.num) {
            return Ok(None);
        }
        Ok(self.delete_if(&k, &v).await?.then_some(lock))
    }

    /// Every lock of exactly this repository and pull.
    pub async fn unlock_by_pull(&self, repo: &str, pull: i64) -> Result<Vec<ProjectLock>> {
        let mut out = Vec::new();
        for k in self.scan(&format!("pr/{}/*", escape_glob(repo))).await? {
            let Some(v) = self.get(&k).await? else {
                continue;
            };
            let Ok(lock) = parse(&v) else { continue };
            if lock.project.repo_full_name == repo
                && lock.pull.num == pull
                && self.delete_if(&k, &v).await?
            {
                out.push(lock);
            }
        }
        Ok(out)
    }

    /// Every project lock by key (the key as stored, without `pr/`). Unreadable values are
    /// reported, not skipped silently.
    pub async fn list(&self) -> Result<BTreeMap<String, ProjectLock>> {
        let mut out = BTreeMap::new();
        for k in self.scan("pr/*").await? {
            let Some(v) = self.get(&k).await? else {
                continue;
            };
            let key = k.strip_prefix("pr/").unwrap_or(&k).to_string();
            let lock = parse(&v).map_err(|e| format!("{k}: {e}"))?;
            out.insert(key, lock);
        }
        Ok(out)
    }

    pub async fn get_lock(&self, key: &str) -> Result<Option<ProjectLock>> {
        match self.get(&format!("pr/{key}")).await? {
            Some(v) => parse(&v).map(Some),
            None => Ok(None),
        }
    }

    /// Takes the apply lock; `Ok(None)` when it exists already.
    pub async fn lock_command(&self, unix_time: i64) -> Result<Option<CommandLock>> {
        let lock = CommandLock {
            lock_metadata: LockMetadata {
                unix_time,
                ..LockMetadata::default()
            },
            ..CommandLock::default()
        };
        let set: Option<String> = redis::cmd("SET")
            .arg(APPLY_LOCK_RESOURCE)
            .arg(lock.to_go_json())
            .arg("NX")
            .query_async(&mut self.conn())
            .await
            .map_err(failed)?;
        Ok(set.map(|_| lock))
    }

    /// Releases the apply lock; false when there was none.
    pub async fn unlock_command(&self) -> Result<bool> {
        let n: i64 = self.conn().del(APPLY_LOCK_RESOURCE).await.map_err(failed)?;
        Ok(n == 1)
    }

    pub async fn check_command(&self) -> Result<Option<CommandLock>> {
        match self.get(APPLY_LOCK_RESOURCE).await? {
            Some(v) => CommandLock::from_json(&v)
                .map(Some)
                .map_err(|e| format!("{APPLY_LOCK_RESOURCE}: {e}")),
            None => Ok(None),
        }
    }
}

fn parse(v: &[u8]) -> Result<ProjectLock> {
    ProjectLock::from_json(v).map_err(|e| format!("not Atlantis's ProjectLock JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped() {
        assert_eq!(escape_glob("acme/in*fra"), "acme/in\\*fra");
        assert_eq!(escape_glob("a[b]?c"), "a\\[b\\]\\?c");
        assert_eq!(escape_glob("plain/repo"), "plain/repo");
    }
}
