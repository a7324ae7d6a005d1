//! The Atlantis adapter on a real server: `elock compat-test` (the conformance list of
//! reference/atlantis.md, over HTTP) passes every case, and a server that refuses leases without
//! expiry says how to allow Atlantis's locks.

mod support;

use serde_json::{json, Value};
use support::Server;

fn server_allowing_no_expiry() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(&config, "enhanced-locking:\n  allow-no-expiry: true\n").unwrap();
    let server = Server::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    (server, dir)
}

#[tokio::test]
async fn every_case_of_the_conformance_list_passes() {
    let (server, _d) = server_allowing_no_expiry();
    let (code, out) = server.cli(&["compat-test"]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    assert!(out.contains("PASS  cross-repo (fixed bug)"), "{out}");
    assert!(out.contains("17 passed, 0 failed"), "{out}");
    let (code, out) = server.cli(&["--output", "json", "compat-test"]);
    assert_eq!(code, 0, "{out}");
    let cases: Vec<Value> = serde_json::from_str(&out).unwrap();
    assert!(cases.iter().all(|c| c["result"] == "PASS"), "{out}");
}

#[tokio::test]
async fn a_lock_taken_through_atlantis_is_an_elock_lease() {
    let (server, _d) = server_allowing_no_expiry();
    let api = server.client();
    let lock = json!({
        "Project": {"ProjectName": "", "RepoFullName": "acme/infra", "Path": "envs/prod"},
        "Pull": {"Num": 42, "URL": "https://github.com/acme/infra/pull/42"},
        "User": {"Username": "alice", "Teams": null},
        "Workspace": "default",
        "Time": "2025-03-04T10:15:30.123456789Z"
    });
    let (status, r) = api.post("/api/atlantis/v1/try-lock", lock).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["LockAcquired"], true);
    assert_eq!(r["LockKey"], "acme/infra/envs/prod/default/");
    let (_, info) = api
        .get("/api/v1/resource?name=acme/infra/envs/prod/default/")
        .await;
    assert_eq!(info["holder"]["owner"], "acme/infra#42", "{info}");
    assert!(info["holder"]["expires_at"].is_null());
    // A native elock client is refused while Atlantis holds it, and waits in line.
    let (status, body) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "acme/infra/envs/prod/default/", "owner": "ci"}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // Atlantis's own list shows it.
    let (status, list) = api.get("/api/locks").await;
    assert_eq!(status, 200);
    assert_eq!(list["Locks"][0]["PullID"], "42", "{list}");
    assert_eq!(list["Locks"][0]["Name"], "acme/infra/envs/prod/default/");
    // Its page.
    let page = reqwest::get(format!(
        "{}/lock?id=acme%252Finfra%252Fenvs%252Fprod%252Fdefault%252F",
        server.url
    ))
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("acme/infra") && html.contains("alice"),
        "{html}"
    );
}

/// Every call of the adapter that changes something is in the audit log with the lock key it
/// touched, refusals (Atlantis's 409) included.
#[tokio::test]
async fn atlantis_calls_are_audited_with_their_lock_keys() {
    let (server, _d) = server_allowing_no_expiry();
    let api = server.client();
    let lock = |pull: i64| {
        json!({
            "Project": {"ProjectName": "", "RepoFullName": "acme/infra", "Path": "envs/prod"},
            "Pull": {"Num": pull},
            "User": {"Username": "alice"},
            "Workspace": "default",
            "Time": "2025-03-04T10:15:30Z"
        })
    };
    const KEY: &str = "acme/infra/envs/prod/default/";
    api.post("/api/atlantis/v1/try-lock", lock(1)).await;
    api.post("/api/atlantis/v1/try-lock", lock(2)).await;
    api.post("/api/atlantis/v1/unlock", json!({"Key": KEY}))
        .await;
    api.post("/api/atlantis/v1/try-lock", lock(3)).await;
    api.post(
        "/api/atlantis/v1/unlock-by-pull",
        json!({"RepoFullName": "acme/infra", "PullNum": 3}),
    )
    .await;
    api.post(
        "/api/atlantis/v1/command-lock/lock",
        json!({"CommandName": 0}),
    )
    .await;
    let (status, _) = api
        .post(
            "/api/atlantis/v1/command-lock/lock",
            json!({"CommandName": 0}),
        )
        .await;
    assert_eq!(status, 409);
    api.post("/api/atlantis/v1/command-lock/unlock", json!({}))
        .await;
    // Atlantis's own endpoint, with the id escaped twice as its links do.
    api.post("/api/atlantis/v1/try-lock", lock(4)).await;
    let (status, _) = api
        .delete("/locks?id=acme%252Finfra%252Fenvs%252Fprod%252Fdefault%252F")
        .await;
    assert_eq!(status, 200);
    let (_, audit) = api.get("/api/v1/audit").await;
    let summary: Vec<(String, u64, Value, Value)> = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
                r["resources"].clone(),
                r["error"].clone(),
            )
        })
        .collect();
    let apply = json!(["global/apply/lock"]);
    let row = |op: &str, status: u64, resources: &Value, error: Value| {
        (op.to_string(), status, resources.clone(), error)
    };
    let key = json!([KEY]);
    let ok = |op: &str, resources: &Value| row(op, 200, resources, Value::Null);
    let try_lock = "POST /api/atlantis/v1/try-lock";
    let command_lock = "POST /api/atlantis/v1/command-lock/lock";
    assert_eq!(
        summary,
        vec![
            ok(try_lock, &key),
            ok(try_lock, &key),
            ok("POST /api/atlantis/v1/unlock", &key),
            ok(try_lock, &key),
            ok("POST /api/atlantis/v1/unlock-by-pull", &key),
            ok(command_lock, &apply),
            row(command_lock, 409, &apply, json!("locked")),
            ok("POST /api/atlantis/v1/command-lock/unlock", &apply),
            ok(try_lock, &key),
            ok("DELETE /locks", &key),
        ]
    );
    // Atlantis's 409 is an error answer in the metrics too.
    let scrape = server.metrics().await;
    assert!(
        scrape.contains("atlantis_enhanced_locking_errors_total{kind=\"locked\"} 1\n"),
        "{scrape}"
    );
}

#[tokio::test]
async fn empty_lists_answer_null_as_atlantis_does() {
    let (server, _d) = server_allowing_no_expiry();
    let (status, list) = server.client().get("/api/locks").await;
    assert_eq!(status, 200);
    assert_eq!(list, json!({"Locks": null}));
}

/// With default settings the adapter's locks never expire (no setting needed), while a native
/// request without expiry is refused naming `allow-no-expiry`, which its environment variable
/// (like every setting) turns on.
#[tokio::test]
async fn adapter_locks_never_expire_by_default_and_allow_no_expiry_governs_native_requests() {
    let server = Server::start();
    let api = server.client();
    let (status, body) = api
        .post(
            "/api/atlantis/v1/try-lock",
            json!({"Project": {"RepoFullName": "o/r", "Path": "."}, "Workspace": "default"}),
        )
        .await;
    assert_eq!(
        (status, &body["LockAcquired"]),
        (200, &json!(true)),
        "{body}"
    );
    let (_, list) = api.get("/api/v1/locks").await;
    assert_eq!(list["locks"][0]["expires_at"], json!(null), "{list}");
    let (status, body) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "native", "owner": "o", "ttl": null}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow-no-expiry"),
        "{body}"
    );
    drop(server);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with_env(
        dir.path(),
        &[],
        &[("ATLANTIS_ENHANCED_LOCKING_ALLOW_NO_EXPIRY", "true")],
    );
    let (status, body) = server
        .client()
        .post(
            "/api/v1/locks",
            json!({"resource": "native", "owner": "o", "ttl": null}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
}

/// The fake token of the fixtures, sent the way Atlantis sends it (inside CloneURL), appears in
/// no answer, no event, no audit record, no page and no export.
#[tokio::test]
async fn the_vcs_token_atlantis_sends_is_never_shown() {
    const TOKEN: &str = "ghp_SECRETTOKEN123";
    let (server, dir) = server_allowing_no_expiry();
    let api = server.client();
    // Follow the event stream while the lock is taken and released.
    let events = {
        let url = format!("{}/api/v1/events", server.url);
        tokio::spawn(async move {
            let mut r = reqwest::get(url).await.unwrap();
            let mut seen = String::new();
            while let Ok(Ok(Some(chunk))) =
                tokio::time::timeout(std::time::Duration::from_secs(2), r.chunk()).await
            {
                seen.push_str(&String::from_utf8_lossy(&chunk));
            }
            seen
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let lock = json!({
        "Project": {"ProjectName": "", "RepoFullName": "acme/infra", "Path": "."},
        "Pull": {"Num": 7, "BaseRepo": {"FullName": "acme/infra",
            "CloneURL": format!("https://atlantis-bot:{TOKEN}@github.com/acme/infra.git")}},
        "User": {"Username": "alice"},
        "Workspace": "default",
        "Time": "2025-03-04T10:15:30Z"
    });
    let mut outputs = Vec::new();
    let (_, r) = api.post("/api/atlantis/v1/try-lock", lock).await;
    outputs.push(r.to_string());
    for path in [
        "/api/v1/locks",
        "/api/v1/export",
        "/api/atlantis/v1/locks",
        "/api/atlantis/v1/lock?key=acme/infra/./default/",
        "/api/locks",
        "/api/v1/audit",
    ] {
        outputs.push(api.get(path).await.1.to_string());
    }
    outputs.push(
        reqwest::get(format!(
            "{}/lock?id=acme%252Finfra%252F.%252Fdefault%252F",
            server.url
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap(),
    );
    outputs.push(server.cli(&["atlantis", "export-redis"]).1);
    outputs.push(server.cli(&["list", "--output", "json"]).1);
    let (_, r) = api
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Key": "acme/infra/./default/"}),
        )
        .await;
    outputs.push(r.to_string());
    outputs.push(events.await.unwrap());
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        if entry.path().is_file() {
            outputs
                .push(String::from_utf8_lossy(&std::fs::read(entry.path()).unwrap()).into_owned());
        }
    }
    assert!(
        outputs[0].contains("atlantis-bot:\\u003credacted\\u003e")
            || outputs[0].contains("atlantis-bot:<redacted>"),
        "{}",
        outputs[0]
    );
    assert!(
        outputs.iter().any(|o| o.contains("lock.released")),
        "the events were followed"
    );
    for (i, o) in outputs.iter().enumerate() {
        assert!(!o.contains(TOKEN), "output {i} shows the token: {o}");
    }
}
