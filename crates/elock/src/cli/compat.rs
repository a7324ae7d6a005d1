//! `elock compat-test`: the conformance list of `reference/atlantis.md` (ported from Atlantis's
//! own boltdb_test.go and redis_test.go), run over HTTP against a live server; PASS or FAIL per
//! case. Every case works under its own repository names (`compat-<run>-<case>/...`), so cases
//! do not see each other; the global apply lock cases take and release the server's one apply
//! lock, so run this against a test server, not one an Atlantis is using.

use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::{json, Value};

use super::client::{CliError, Client};
use super::output::{self, Format};

struct Ctx<'a> {
    client: &'a Client,
    run: String,
}

type CaseResult = Result<(), String>;

async fn call(c: &Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut b = c.builder(method, path);
    if let Some(body) = body {
        b = b.json(&body);
    }
    match b.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let text = r.text().await.unwrap_or_default();
            (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            )
        }
        Err(e) => (0, Value::String(e.to_string())),
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> CaseResult {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

impl Ctx<'_> {
    fn repo(&self, case: &str, name: &str) -> String {
        format!("compat-{}-{case}/{name}", self.run)
    }

    /// The fixture lock: project `repo`, path, workspace, pull, user `lkysow`.
    fn lock(&self, repo: &str, path: &str, ws: &str, pull: i64) -> Value {
        json!({
            "Project": {"ProjectName": "", "RepoFullName": repo, "Path": path},
            "Pull": {"Num": pull, "HeadCommit": "abc", "URL": format!("https://github.com/{repo}/pull/{pull}"),
                     "HeadBranch": "feature", "BaseBranch": "main", "HardenedNonPRRefCheckout": false,
                     "Author": "lkysow", "Body": "", "State": 0,
                     "BaseRepo": {"FullName": repo, "Owner": repo.split('/').next().unwrap_or(""), "Name": "repo",
                                  "CloneURL": "", "SanitizedCloneURL": "", "VCSHost": {"Hostname": "github.com", "Type": 0}}},
            "User": {"Username": "lkysow", "Teams": null},
            "Workspace": ws,
            "Time": "2025-03-04T10:15:30.123456789Z",
        })
    }

    async fn try_lock(&self, lock: &Value) -> Result<Value, String> {
        let (s, v) = call(
            self.client,
            Method::POST,
            "/api/atlantis/v1/try-lock",
            Some(lock.clone()),
        )
        .await;
        check(s == 200, || format!("try-lock answered {s}: {v}"))?;
        Ok(v)
    }

    /// The keys of this run's locks whose repository starts with `compat-<run>-<case>/`.
    async fn keys(&self, case: &str) -> Result<Vec<String>, String> {
        let (s, v) = call(self.client, Method::GET, "/api/atlantis/v1/locks", None).await;
        check(s == 200, || format!("locks answered {s}: {v}"))?;
        let prefix = format!("compat-{}-{case}/", self.run);
        Ok(v.as_object()
            .map(|m| {
                m.keys()
                    .filter(|k| k.starts_with(&prefix))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        call(self.client, Method::POST, path, Some(body)).await
    }

    async fn get_lock(&self, key: &str) -> Result<Value, String> {
        let path = format!("/api/atlantis/v1/lock?key={}", url_escape(key));
        let (s, v) = call(self.client, Method::GET, &path, None).await;
        check(s == 200, || format!("lock answered {s}: {v}"))?;
        Ok(v)
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
    let mut out = Vec::new();
    let unlock = || c.post("/api/atlantis/v1/command-lock/unlock", json!({}));
    let lock = || {
        c.post(
            "/api/atlantis/v1/command-lock/lock",
            json!({"CommandName": 0}),
        )
    };
    let check_lock = || call(c.client, Method::GET, "/api/atlantis/v1/command-lock", None);
    unlock().await;
    let (s, v) = check_lock().await;
    out.push((
        "command lock not set",
        check(s == 200 && v.is_null(), || {
            format!("check answered {s}: {v}")
        }),
    ));
    let (s, v) = lock().await;
    let (s2, v2) = check_lock().await;
    out.push((
        "command lock set",
        check(s == 200 && s2 == 200 && v2["CommandName"] == 0, || {
            format!("lock {s} {v}, check {s2} {v2}")
        }),
    ));
    let (s, v) = lock().await;
    out.push((
        "command lock twice",
        check(
            s == 409 && v["error"]["message"] == "db transaction failed: lock already exists",
            || format!("second lock answered {s}: {v}"),
        ),
    ));
    let (s, _) = unlock().await;
    let (s2, v2) = check_lock().await;
    out.push((
        "unlock command lock",
        check(s == 200 && v2.is_null(), || {
            format!("unlock {s}, check {s2} {v2}")
        }),
    ));
    let (s, v) = unlock().await;
    out.push((
        "unlock missing command lock",
        check(
            s == 409 && v["error"]["message"] == "db transaction failed: no lock exists",
            || format!("unlock answered {s}: {v}"),
        ),
    ));
    out
}

async fn mixed_locks(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("mixed", "repo");
    c.post(
        "/api/atlantis/v1/command-lock/lock",
        json!({"CommandName": 0}),
    )
    .await;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let keys = c.keys("mixed").await?;
    c.post("/api/atlantis/v1/command-lock/unlock", json!({}))
        .await;
    check(keys.len() == 1, || format!("list has {keys:?}"))
}

async fn old_key(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("oldkey", "repo");
    let mut lock = c.lock(&repo, "parent/child", "default", 1);
    lock["Project"]["ProjectName"] = "myproject".into();
    c.try_lock(&lock).await?;
    let found = c.get_lock(&format!("{repo}/parent/child/default")).await?;
    check(
        found["Project"]["ProjectName"] == "myproject" && found["Pull"]["Num"] == 1,
        || format!("the three-part key found {found}"),
    )
}

async fn new_key(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("newkey", "repo");
    let mut lock = c.lock(&repo, "parent/child", "default", 1);
    lock["Project"]["ProjectName"] = "myproject".into();
    c.try_lock(&lock).await?;
    let found = c
        .get_lock(&format!("{repo}/parent/child/default/myproject"))
        .await?;
    check(found == lock, || {
        format!("read back {found}, stored {lock}")
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
        c.post("/api/atlantis/v1/unlock", json!({"Key": k})).await;
    }
    check(c.keys("list").await?.is_empty(), || {
        "list: after unlock".into()
    })
}

async fn try_lock_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("try", "repo");
    let lock = c.lock(&repo, "parent/child", "default", 1);
    let r = c.try_lock(&lock).await?;
    check(r["LockAcquired"] == true && r["CurrLock"] == lock, || {
        format!("no locks: {r}")
    })?;
    check(
        r["LockKey"] == key(&repo, "parent/child", "default"),
        || format!("LockKey {}", r["LockKey"]),
    )?;
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
        check(r["LockAcquired"] == true, || format!("{what}: {r}"))?;
    }
    let r = c
        .try_lock(&c.lock(&repo, "parent/child", "default", 2))
        .await?;
    check(
        r["LockAcquired"] == false && r["CurrLock"]["Pull"]["Num"] == 1,
        || format!("another pull: {r}"),
    )
}

async fn unlock_cases(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("unlock", "repo");
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Key": key(&repo, "x", "default")}),
        )
        .await;
    check(s == 200 && v.is_null(), || format!("unlock, none: {s} {v}"))?;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Project": {"RepoFullName": repo, "Path": "parent/child", "ProjectName": ""}, "Workspace": "default"}),
        )
        .await;
    check(s == 200 && v["Pull"]["Num"] == 1, || {
        format!("unlock: {s} {v}")
    })?;
    check(c.keys("unlock").await?.is_empty(), || {
        "unlock: list not empty".into()
    })?;
    let r = c
        .try_lock(&c.lock(&repo, "parent/child", "default", 2))
        .await?;
    check(r["LockAcquired"] == true, || {
        format!("pull 2 after unlock: {r}")
    })
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
        c.post("/api/atlantis/v1/unlock", json!({"Key": k})).await;
    }
    check(c.keys("several").await?.is_empty(), || {
        "not all unlocked".into()
    })
}

async fn unlock_if_owned(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("owned", "repo");
    let k = key(&repo, "parent/child", "default");
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock-if-owned-by-pull",
            json!({"Key": k, "PullNum": 1}),
        )
        .await;
    check(s == 200 && v.is_null(), || format!("missing: {s} {v}"))?;
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock-if-owned-by-pull",
            json!({"Key": k, "PullNum": 2}),
        )
        .await;
    check(s == 200 && v.is_null(), || format!("other pull: {s} {v}"))?;
    check(c.keys("owned").await?.len() == 1, || {
        "other pull: the lock went".into()
    })?;
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock-if-owned-by-pull",
            json!({"Key": k, "PullNum": 1}),
        )
        .await;
    check(s == 200 && v["Pull"]["Num"] == 1, || {
        format!("this pull: {s} {v}")
    })?;
    check(c.keys("owned").await?.is_empty(), || {
        "this pull: the lock stayed".into()
    })
}

async fn unlock_by_pull(c: &Ctx<'_>, repo: &str, pull: i64) -> Result<Vec<Value>, String> {
    let (s, v) = c
        .post(
            "/api/atlantis/v1/unlock-by-pull",
            json!({"RepoFullName": repo, "PullNum": pull}),
        )
        .await;
    check(s == 200, || format!("unlock-by-pull answered {s}: {v}"))?;
    Ok(v.as_array().cloned().unwrap_or_default())
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
    check(c.get_lock(&k).await?.is_null(), || "missing".into())?;
    let lock = c.lock(&repo, "parent/child", "default", 1);
    c.try_lock(&lock).await?;
    let got = c.get_lock(&k).await?;
    check(got == lock, || format!("present: {got}"))
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
        || format!("unlocked {gone:?}, left {left:?}"),
    )
}

async fn atlantis_endpoints(c: &Ctx<'_>) -> CaseResult {
    let repo = c.repo("web", "repo");
    c.try_lock(&c.lock(&repo, "parent/child", "default", 1))
        .await?;
    let (s, v) = call(c.client, Method::GET, "/api/locks", None).await;
    let mine = v["Locks"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|l| l["ProjectRepo"] == repo.as_str())
        .cloned();
    check(s == 200, || format!("GET /api/locks answered {s}"))?;
    let l = mine.ok_or("GET /api/locks: the lock is missing")?;
    check(
        l["PullID"] == "1" && l["User"] == "lkysow" && l["ProjectRepoPath"] == "parent/child",
        || format!("GET /api/locks row {l}"),
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
        let (s, v) = call(c.client, Method::DELETE, &format!("/locks{query}"), None).await;
        check(s == status && v == message.as_str(), || {
            format!("DELETE /locks{query}: {s} {v}, expected {status} {message}")
        })?;
    }
    Ok(())
}

pub async fn run(client: &Client, out: Format) -> Result<bool, CliError> {
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
        Format::Json => output::json(&Value::Array(
            results
                .iter()
                .map(|(name, r)| {
                    json!({"case": name, "result": if r.is_ok() { "PASS" } else { "FAIL" },
                           "detail": r.as_ref().err()})
                })
                .collect(),
        )),
        Format::Table => {
            for (name, r) in &results {
                match r {
                    Ok(()) => println!("PASS  {name}"),
                    Err(e) => println!("FAIL  {name}: {e}"),
                }
            }
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            println!("{} passed, {failed} failed", results.len() - failed);
        }
    }
    Ok(passed)
}
