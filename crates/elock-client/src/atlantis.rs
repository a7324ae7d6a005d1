//! The Atlantis adapter (`/api/atlantis/v1/...`, `/api/locks`): Atlantis's lock calls with
//! Atlantis's own types, as a modified Atlantis (or a test of one) makes them.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;

use elock_atlantis::adapter::{
    ApiLocks, CommandRequest, KeyRequest, MigrationReport, TryLockResponse, UnlockByPullRequest,
};
use elock_atlantis::{CommandLock, ProjectLock};

use crate::client::{Call, Client};
use crate::error::Result;

/// The adapter's calls, borrowed from a [`Client`]: `client.atlantis().try_lock(&lock)`.
pub struct Atlantis<'c> {
    client: &'c Client,
}

impl Client {
    pub fn atlantis(&self) -> Atlantis<'_> {
        Atlantis { client: self }
    }
}

impl Atlantis<'_> {
    async fn post<T, B>(&self, path: &str, body: &B) -> Result<T>
    where
        T: serde::de::DeserializeOwned,
        B: Serialize,
    {
        self.client
            .call(Call {
                method: Method::POST,
                path,
                query: None::<&()>,
                body: Some(body),
                extra_time: Duration::ZERO,
            })
            .await
    }

    /// TryLock: the lock, or the holder's lock with `lock_acquired: false`.
    pub async fn try_lock(&self, lock: &ProjectLock) -> Result<TryLockResponse> {
        self.post("/api/atlantis/v1/try-lock", lock).await
    }

    /// Unlock: the lock released, or `None` when there was none.
    pub async fn unlock(&self, key: &str) -> Result<Option<ProjectLock>> {
        self.unlock_which(&KeyRequest::key(key)).await
    }

    /// Unlock naming the lock as Atlantis does: by key, or by project and workspace.
    pub async fn unlock_which(&self, which: &KeyRequest) -> Result<Option<ProjectLock>> {
        self.post("/api/atlantis/v1/unlock", which).await
    }

    /// Unlock only if pull request `pull` holds it (`locked` otherwise).
    pub async fn unlock_if_owned_by_pull(
        &self,
        key: &str,
        pull: i64,
    ) -> Result<Option<ProjectLock>> {
        let body = KeyRequest {
            pull_num: Some(pull),
            ..KeyRequest::key(key)
        };
        self.post("/api/atlantis/v1/unlock-if-owned-by-pull", &body)
            .await
    }

    /// UnlockByPull: every lock of the pull request, released.
    pub async fn unlock_by_pull(&self, repo: &str, pull: i64) -> Result<Vec<ProjectLock>> {
        let body = UnlockByPullRequest {
            repo_full_name: repo.into(),
            pull_num: pull,
        };
        self.post("/api/atlantis/v1/unlock-by-pull", &body).await
    }

    /// List: every project lock by key.
    pub async fn list(&self) -> Result<BTreeMap<String, ProjectLock>> {
        self.client.call(Call::get("/api/atlantis/v1/locks")).await
    }

    /// GetLock: one project lock, or `None`.
    pub async fn get_lock(&self, key: &str) -> Result<Option<ProjectLock>> {
        let query = [("key", key)];
        self.client
            .call(Call::query("/api/atlantis/v1/lock", &query))
            .await
    }

    /// CheckCommandLock: the global apply lock, if held.
    pub async fn check_command(&self) -> Result<Option<CommandLock>> {
        self.client
            .call(Call::get("/api/atlantis/v1/command-lock"))
            .await
    }

    /// LockCommand: take the global apply lock (`locked` when held).
    pub async fn lock_command(&self) -> Result<CommandLock> {
        self.post(
            "/api/atlantis/v1/command-lock/lock",
            &CommandRequest { command_name: 0 },
        )
        .await
    }

    /// UnlockCommand: release the global apply lock.
    pub async fn unlock_command(&self) -> Result<()> {
        let _: serde_json::Value = self
            .post("/api/atlantis/v1/command-lock/unlock", &())
            .await?;
        Ok(())
    }

    /// The migration mode in force and what it has done.
    pub async fn migration(&self) -> Result<MigrationReport> {
        self.client
            .call(Call::get("/api/atlantis/v1/migration"))
            .await
    }

    /// Atlantis's `GET /api/locks`.
    pub async fn api_locks(&self) -> Result<ApiLocks> {
        self.client.call(Call::get("/api/locks")).await
    }
}
