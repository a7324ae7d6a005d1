//! `elock compat-test`: the conformance list of `reference/atlantis.md` (ported from Atlantis's
//! own boltdb_test.go and redis_test.go), run over HTTP against a live server; PASS or FAIL per
//! case. Every case works under its own repository names (`compat-<run>-<case>/...`), so cases
//! do not see each other; the global apply lock cases take and release the server's one apply
//! lock, so run this against a test server, not one an Atlantis is using.

use std::time::{SystemTime, UNIX_EPOCH};

use elock_atlantis::{GoTime, Project, ProjectLock, Repo, VcsHost};
use elock_client::api::ErrorCode;
use elock_client::{Client, Error};
use reqwest::Method;
use serde::Serialize;

use super::errors::CliError;
use super::output::{self, say, Format};

struct Ctx<'a> {
    client: &'a Client,
    run: String,
}

type CaseResult = Result<(), String>;

fn check(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

/// A call's answer, or what went wrong, as a case's failure text.
fn answered<T>(what: &str, r: Result<T, Error>) -> Result<T, String> {
    r.map_err(|e| format!("{what}: {e}"))
}

/// Whether `r` is the refusal Atlantis gives: 409 with exactly `message`.
fn refused<T: std::fmt::Debug>(r: &Result<T, Error>, message: &str) -> bool {
    matches!(r, Err(Error::Api { status: 409, code: ErrorCode::Locked, message: m, .. }) if m == message)
}

impl Ctx<'_> {
    fn repo(&self, case: &str, name: &str) -> String {
        format!("compat-{}-{case}/{name}", self.run)
    }

    /// The fixture lock: project `repo`, path, workspace, pull, user `lkysow`.
    fn lock(&self, repo: &str, path: &str, ws: &str, pull: i64) -> ProjectLock {
        let mut lock = ProjectLock::of_pull(repo, path, ws, pull, "lkysow");
        let p = &mut lock.pull;
        p.head_commit = "abc".into();
        p.head_branch = "feature".into();
        p.base_branch = "main".into();
        p.author = "lkysow".into();
        p.base_repo = Repo {
            full_name: repo.into(),
            owner: repo.split('/').next().unwrap_or("").into(),
            name: "repo".into(),
            vcs_host: VcsHost {
                hostname: "github.com".into(),
                ..VcsHost::default()
            },
            ..Repo::default()
        };
        lock.time = GoTime::parse("2025-03-04T10:15:30.123456789Z").unwrap_or_default();
        lock
    }

    async fn try_lock(
        &self,
        lock: &ProjectLock,
    ) -> Result<elock_atlantis::adapter::TryLockResponse, String> {
        answered("try-lock", self.client.atlantis().try_lock(lock).await)
    }

    /// The keys of this run's locks whose repository starts with `compat-<run>-<case>/`.
    async fn keys(&self, case: &str) -> Result<Vec<String>, String> {
        let locks = answered("locks", self.client.atlantis().list().await)?;
        let prefix = format!("compat-{}-{case}/", self.run);
        Ok(locks
            .into_keys()
            .filter(|k| k.starts_with(&prefix))
            .collect())
    }

    async fn get_lock(&self, key: &str) -> Result<Option<ProjectLock>, String> {
        answered("lock", self.client.atlantis().get_lock(key).await)
    }

    async fn unlock(&self, key: &str) -> Result<Option<ProjectLock>, String> {
        answered("unlock", self.client.atlantis().unlock(key).await)
    }
}

/// Go's `url.QueryEscape`, which Atlantis applies to lock ids (twice in its links).
fn url_escape(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn key(repo: &str, path: &str, ws: &str) -> String {
    format!("{repo}/{path}/{ws}/")
}

async fn command_lock_cases(c: &Ctx<'_>) -> Vec<(&'static str, CaseResult)> {
    let a = c.client.atlantis();
    let mut out = Vec::new();
    let _ = a.unlock_command().await;
    let held = a.check_command().await;
    out.push((
        "command lock not set",
        check(matches!(held, Ok(None)), || {
            format!("check answered {held:?}")
        }),
    ));
    let taken = a.lock_command().await;
    let held = a.check_command().await;
    out.push((
        "command lock set",
        check(
            taken.is_ok() && matches!(&held, Ok(Some(l)) if l.command_name == 0),
            || format!("lock {taken:?}, check {held:?}"),
        ),
    ));
    let twice = a.lock_command().await;
    out.push((
        "command lock twice",
        check(
            refused(&twice, "db transaction failed: lock already exists"),
            || format!("second lock answered {twice:?}"),
        ),
    ));
    let unlocked = a.unlock_command().await;
    let held = a.check_command().await;
    out.push((
        "unlock command lock",
        check(unlocked.is_ok() && matches!(held, Ok(None)), || {
            format!("unlock {unlocked:?}, check {held:?}")
        }),
    ));
    let again = a.unlock_command().await;
    out.push((
        "unlock missing command lock",
        check(
            refused(&again, "db transaction failed: no lock exists"),
            || format!("unlock answered {again:?}"),
        ),
    ));
    out
}

async fn mixed_locks(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("mixed", "repo");
    let _ = c.client.atlantis().lock_command().await;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let keys = c.keys("mixed").await?;
    let _ = c.client.atlantis().unlock_command().await;
    check(keys.len() == 1, || format!("list has {keys:?}"))
}

async fn old_key(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("oldkey", "repo");
    let mut lock = c.lock(&repo, "parent/child", "default", 1);
    lock.project.project_name = "myproject".into();
    c.try_lock(&lock).await?;
    let found = c.get_lock(&format!("{repo}/parent/child/default")).await?;
    check(
        found
            .as_ref()
            .is_some_and(|f| f.project.project_name == "myproject" && f.pull.num == 1),
        || format!("the three-part key found {found:?}"),
    )
}

async fn new_key(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("newkey", "repo");
    let mut lock = c.lock(&repo, "parent/child", "default", 1);
    lock.project.project_name = "myproject".into();
    c.try_lock(&lock).await?;
    let found = c
        .get_lock(&format!("{repo}/parent/child/default/myproject"))
        .await?;
    check(found.as_ref() == Some(&lock), || {
        format!("read back {found:?}, stored {lock:?}")
    })
}

async fn list_cases(c: &Ctx<'_>) -> CaseResult {
    check(c.keys("list").await?.is_empty(), || "list: none".into())?;
    let repo = c.repo("list", "repo");
    c.try_lock(&c.lock(&repo, "a", "default", 1)).await?;
    check(c.keys("list").await?.len() == 1, || "list: one".into())?;
    c.try_lock(&c.lock(&repo, "b", "default", 1)).await?;
    c.try_lock(&c.lock(&repo, "c", "staging", 2)).await?;
    let keys = c.keys("list").await?;
    check(keys.len() == 3, || format!("list: several gave {keys:?}"))?;
    for k in keys {
        c.unlock(&k).await?;
    }
    check(c.keys("list").await?.is_empty(), || {
        "list: after unlock".into()
    })
}

async fn try_lock_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("try", "repo");
    let lock = c.lock(&repo, "parent/child", "default", 1);
    let r = c.try_lock(&lock).await?;
    check(r.lock_acquired && r.curr_lock == lock, || {
        format!("no locks: {r:?}")
    })?;
    check(r.lock_key == key(&repo, "parent/child", "default"), || {
        format!("LockKey {}", r.lock_key)
    })?;
    for (what, other) in [
        ("other path", c.lock(&repo, "other/path", "default", 2)),
        (
            "other workspace",
            c.lock(&repo, "parent/child", "staging", 2),
        ),
        (
            "other repo",
            c.lock(&c.repo("try", "repo2"), "parent/child", "default", 2),
        ),
    ] {
        let r = c.try_lock(&other).await?;
        check(r.lock_acquired, || format!("{what}: {r:?}"))?;
    }
    let r = c
        .try_lock(&c.lock(&repo, "parent/child", "default", 2))
        .await?;
    check(!r.lock_acquired && r.curr_lock.pull.num == 1, || {
        format!("another pull: {r:?}")
    })
}

async fn unlock_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("unlock", "repo");
    let none = c.unlock(&key(&repo, "x", "default")).await?;
    check(none.is_none(), || format!("unlock, none: {none:?}"))?;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    // Atlantis's own form: the project and the workspace instead of the key.
    let body = elock_atlantis::adapter::KeyRequest {
        project: Some(Project {
            repo_full_name: repo.clone(),
            path: "parent/child".into(),
            ..Project::default()
        }),
        workspace: Some("default".into()),
        ..Default::default()
    };
    let released = answered("unlock", c.client.atlantis().unlock_which(&body).await)?;
    check(released.as_ref().is_some_and(|l| l.pull.num == 1), || {
        format!("unlock: {released:?}")
    })?;
    check(c.keys("unlock").await?.is_empty(), || {
        "unlock: list not empty".into()
    })?;
    let r = c
        .try_lock(&c.lock(&repo, "parent/child", "default", 2))
        .await?;
    check(r.lock_acquired, || format!("pull 2 after unlock: {r:?}"))
}
async fn unlock_several(c: &Ctx<'_>) -> CaseResult {
    let (r1, r2) = (c.repo("several", "repo"), c.repo("several", "repo2"));
    for (repo, path, ws) in [
        (&r1, "parent/child", "default"),
        (&r2, "parent/child", "default"),
        (&r1, "other/child", "default"),
        (&r1, "parent/child", "staging"),
    ] {
        c.try_lock(&c.lock(repo, path, ws, 1)).await?;
    }
    let keys = c.keys("several").await?;
    check(keys.len() == 4, || format!("locked {keys:?}"))?;
    for k in keys {
        c.unlock(&k).await?;
    }
    check(c.keys("several").await?.is_empty(), || {
        "not all unlocked".into()
    })
}

async fn unlock_if_owned(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("owned", "repo");
    let k = key(&repo, "parent/child", "default");
    let a = c.client.atlantis();
    let missing = answered("missing", a.unlock_if_owned_by_pull(&k, 1).await)?;
    check(missing.is_none(), || format!("missing: {missing:?}"))?;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let other = answered("other pull", a.unlock_if_owned_by_pull(&k, 2).await)?;
    check(other.is_none(), || format!("other pull: {other:?}"))?;
    check(c.keys("owned").await?.len() == 1, || {
        "other pull: the lock went".into()
    })?;
    let this = answered("this pull", a.unlock_if_owned_by_pull(&k, 1).await)?;
    check(this.as_ref().is_some_and(|l| l.pull.num == 1), || {
        format!("this pull: {this:?}")
    })?;
    check(c.keys("owned").await?.is_empty(), || {
        "this pull: the lock stayed".into()
    })
}

async fn unlock_by_pull(c: &Ctx<'_>, repo: &str, pull: i64) -> Result<Vec<ProjectLock>, String> {
    answered(
        "unlock-by-pull",
        c.client.atlantis().unlock_by_pull(repo, pull).await,
    )
}

async fn unlock_by_pull_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("bypull", "repo");
    check(unlock_by_pull(c, &repo, 1).await?.is_empty(), || {
        "none".into()
    })?;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    check(unlock_by_pull(c, &repo, 2).await?.is_empty(), || {
        "wrong pull deleted".into()
    })?;
    check(
        unlock_by_pull(c, &c.repo("bypull", "other"), 1)
            .await?
            .is_empty(),
        || "wrong repo deleted".into(),
    )?;
    check(c.keys("bypull").await?.len() == 1, || {
        "one: the lock went".into()
    })?;
    check(unlock_by_pull(c, &repo, 1).await?.len() == 1, || {
        "exact match".into()
    })?;
    check(c.keys("bypull").await?.is_empty(), || "after unlock".into())?;
    for (path, ws) in [("a", "default"), ("b", "default"), ("a", "staging")] {
        c.try_lock(&c.lock(&repo, path, ws, 3)).await?;
    }
    check(unlock_by_pull(c, &repo, 3).await?.len() == 3, || {
        "matching: 3".into()
    })?;
    check(c.keys("bypull").await?.is_empty(), || {
        "matching: some left".into()
    })
}

async fn get_lock_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("get", "repo");
    let k = key(&repo, "parent/child", "default");
    check(c.get_lock(&k).await?.is_none(), || "missing".into())?;
    let lock = c.lock(&repo, "parent/child", "default", 1);
    c.try_lock(&lock).await?;
    let got = c.get_lock(&k).await?;
    check(got.as_ref() == Some(&lock), || format!("present: {got:?}"))
}

async fn cross_repo(c: &Ctx<'_>) -> CaseResult {
    let (repo, repo2) = (c.repo("cross", "repo"), c.repo("cross", "repo2"));
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    c.try_lock(&c.lock(&repo2, "parent/child", "default", 1))
        .await?;
    let gone = unlock_by_pull(c, &repo, 1).await?;
    let left = c.keys("cross").await?;
    check(
        gone.len() == 1 && left == [key(&repo2, "parent/child", "default")],
        || format!("unlocked {} lock(s), left {left:?}", gone.len()),
    )
}

async fn atlantis_endpoints(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("web", "repo");
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let rows = answered("GET /api/locks", c.client.atlantis().api_locks().await)?;
    let l = rows
        .locks
        .into_iter()
        .flatten()
        .find(|l| l.project_repo == repo)
        .ok_or("GET /api/locks: the lock is missing")?;
    check(
        l.pull_id == "1" && l.user == "lkysow" && l.project_repo_path == "parent/child",
        || format!("GET /api/locks row {l:?}"),
    )?;
    let id = key(&repo, "parent/child", "default");
    let twice = url_escape(&url_escape(&id));
    for (query, status, message) in [
        (String::new(), 400, "No lock id in request".to_string()),
        (
            "?id=%25A%40".to_string(),
            400,
            "Invalid lock id".to_string(),
        ),
        (
            format!("?id={}", url_escape(&url_escape(&format!("{id}x")))),
            404,
            format!("No lock found at id '{id}x'"),
        ),
        (
            format!("?id={twice}"),
            200,
            format!("Deleted lock id '{id}'"),
        ),
    ] {
        // Atlantis's own page answers in text, not JSON.
        let (s, v) = match c
            .client
            .request(Method::DELETE, &format!("/locks{query}"))
            .send()
            .await
        {
            Ok(r) => (r.status().as_u16(), r.text().await.unwrap_or_default()),
            Err(e) => (0, e.to_string()),
        };
        check(s == status && v == message, || {
            format!("DELETE /locks{query}: {s} {v:?}, expected {status} {message}")
        })?;
    }
    Ok(())
}

/// One case's line of `--output json`.
#[derive(Serialize)]
struct CaseLine<'a> {
    case: &'a str,
    result: &'static str,
    detail: Option<&'a String>,
}

/// Runs every case; fails (exit 1) when one does not pass.
pub async fn run(client: &Client, out: Format) -> Result<(), CliError> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let c = Ctx {
        client,
        run: format!("{:x}", nanos % 0xffff_ffff),
    };
    let mut results: Vec<(&'static str, CaseResult)> = command_lock_cases(&c).await;
    results.push(("mixed locks", mixed_locks(&c).await));
    results.push(("old three-part key", old_key(&c).await));
    results.push(("new-format key", new_key(&c).await));
    results.push((
        "list: none / one / several / after unlock",
        list_cases(&c).await,
    ));
    results.push(("try-lock: no locks / existing", try_lock_cases(&c).await));
    results.push((
        "unlock: none / one, then pull 2 locks",
        unlock_cases(&c).await,
    ));
    results.push(("unlock several", unlock_several(&c).await));
    results.push((
        "unlock-if-owned: missing / other pull / this pull",
        unlock_if_owned(&c).await,
    ));
    results.push((
        "unlock-by-pull: none / one / after unlock / matching",
        unlock_by_pull_cases(&c).await,
    ));
    results.push(("get-lock: missing / present", get_lock_cases(&c).await));
    results.push(("cross-repo (fixed bug)", cross_repo(&c).await));
    results.push((
        "Atlantis endpoints: GET /api/locks, DELETE /locks?id=",
        atlantis_endpoints(&c).await,
    ));
    let passed = results.iter().all(|(_, r)| r.is_ok());
    match out {
        Format::Json => output::json(
            &results
                .iter()
                .map(|(name, r)| CaseLine {
                    case: name,
                    result: if r.is_ok() { "PASS" } else { "FAIL" },
                    detail: r.as_ref().err(),
                })
                .collect::<Vec<_>>(),
        ),
        Format::Table => {
            for (name, r) in &results {
                match r {
                    Ok(()) => say!("PASS  {name}"),
                    Err(e) => say!("FAIL  {name}: {e}"),
                }
            }
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            say!("{} passed, {failed} failed", results.len() - failed);
        }
    }
    if passed {
        Ok(())
    } else {
        Err(CliError::usage("some Atlantis conformance cases failed"))
    }
}
