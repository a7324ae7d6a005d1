//! Black-box tests of authentication (401, 403 per role) and of the audit log.

mod support;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use support::Server;

fn sha(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

async fn call(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut b = reqwest::Client::new().request(method, format!("{}{path}", server.url));
    if let Some(t) = token {
        b = b.bearer_auth(t);
    }
    if let Some(body) = body {
        b = b.json(&body);
    }
    let r = b.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn secured_server() -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "auth:\n  tokens:\n    - {{name: viewer, role: read, token-sha256: {}}}\n    - {{name: ci, role: write, token-sha256: {}}}\n    - {{name: ops, role: admin, token-env: ELOCK_TEST_ADMIN_TOKEN}}\n",
            sha("read-secret"),
            sha("write-secret")
        ),
    )
    .unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("ELOCK_TEST_ADMIN_TOKEN", "admin-secret")],
    );
    (server, dir)
}

#[tokio::test]
async fn tokens_and_roles_give_401_and_403_as_the_table_says() {
    use reqwest::Method;
    let (server, _dir) = secured_server();
    let (s, body) = call(&server, Method::GET, "/api/v1/locks", None, None).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    assert_eq!(
        call(&server, Method::GET, "/api/v1/locks", Some("wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        call(&server, Method::GET, "/healthz", None, None).await.0,
        200,
        "probes are open"
    );
    assert_eq!(
        call(&server, Method::GET, "/metrics", None, None).await.0,
        200
    );
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/api/v1/locks",
            Some("read-secret"),
            None
        )
        .await
        .0,
        200
    );
    let lock = json!({"resource": "r", "owner": "a"});
    let (s, body) = call(
        &server,
        Method::POST,
        "/api/v1/locks",
        Some("read-secret"),
        Some(lock.clone()),
    )
    .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("forbidden"))
    );
    let (s, lease) = call(
        &server,
        Method::POST,
        "/api/v1/locks",
        Some("write-secret"),
        Some(lock),
    )
    .await;
    assert_eq!(s, 201);
    let force = json!({"name": "r", "reason": "test"});
    assert_eq!(
        call(
            &server,
            Method::POST,
            "/api/v1/resource/force-release",
            Some("write-secret"),
            Some(force.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &server,
            Method::GET,
            "/api/v1/audit",
            Some("write-secret"),
            None
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &server,
            Method::POST,
            "/api/v1/resource/force-release",
            Some("admin-secret"),
            Some(force)
        )
        .await
        .0,
        200
    );
    let (s, audit) = call(
        &server,
        Method::GET,
        "/api/v1/audit?limit=10",
        Some("admin-secret"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    let records = audit["records"].as_array().unwrap();
    let ops: Vec<(&str, &str, u64)> = records
        .iter()
        .map(|r| {
            (
                r["actor"].as_str().unwrap(),
                r["operation"].as_str().unwrap(),
                r["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        ops,
        vec![
            ("viewer", "POST /api/v1/locks", 403),
            ("ci", "POST /api/v1/locks", 201),
            ("ci", "POST /api/v1/resource/force-release", 403),
            ("ops", "POST /api/v1/resource/force-release", 200)
        ],
        "refusals are audited with who tried"
    );
    assert_eq!(records[1]["lease_id"], lease["id"]);
    assert_eq!(records[1]["resources"], json!(["r"]));
    assert_eq!(records[3]["resources"], json!(["r"]));
    assert_eq!(records[0]["error"], "forbidden");
    assert!(records[1]["remote"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));
    // The CLI sends its token.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["--server", &server.url, "--token", "read-secret", "list"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[tokio::test]
async fn every_mutating_call_is_audited_as_json_lines_without_secrets() {
    let server = Server::start();
    let api = server.client();
    let (_, a) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "a", "metadata": {"token": "ghp_SECRETTOKEN123"}}),
        )
        .await;
    api.post("/api/v1/locks", json!({"resource": "r", "owner": "b"}))
        .await;
    let (_, t) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "c", "wait": "1m", "detach": true}),
        )
        .await;
    api.delete(&format!("/api/v1/tickets/{}", t["id"].as_str().unwrap()))
        .await;
    api.post(
        &format!("/api/v1/locks/{}/renew", a["id"].as_str().unwrap()),
        json!({}),
    )
    .await;
    api.delete(&format!("/api/v1/locks/{}", a["id"].as_str().unwrap()))
        .await;
    api.get("/api/v1/locks").await;
    let (_, audit) = api.get("/api/v1/audit").await;
    let records = audit["records"].as_array().unwrap();
    let summary: Vec<(String, u64, Option<&str>)> = records
        .iter()
        .map(|r| {
            (
                r["operation"].as_str().unwrap().to_string(),
                r["status"].as_u64().unwrap(),
                r["error"].as_str(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("POST /api/v1/locks".to_string(), 201, None),
            ("POST /api/v1/locks".to_string(), 409, Some("locked")),
            ("POST /api/v1/locks".to_string(), 202, None),
            ("DELETE /api/v1/tickets/{id}".to_string(), 200, None),
            ("POST /api/v1/locks/{id}/renew".to_string(), 200, None),
            ("DELETE /api/v1/locks/{id}".to_string(), 200, None),
        ],
        "GETs are not audited"
    );
    assert_eq!(records[2]["ticket_id"], t["id"]);
    assert_eq!(records[3]["ticket_id"], t["id"]);
    assert!(records
        .iter()
        .all(|r| r["actor"] == "anonymous" && r["resources"] == json!(["r"])));
    let file = std::fs::read_to_string(server.data_dir.join("audit.jsonl")).unwrap();
    assert_eq!(file.lines().count(), 6);
    assert!(
        !file.contains("ghp_SECRETTOKEN123"),
        "metadata never reaches the audit log"
    );
}

#[test]
fn an_open_api_beyond_loopback_is_announced_loudly() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(dir.path())
        .env("ELOCK_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut stdout)
        .unwrap();
    child.kill().unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.contains("listening"), "{stdout}");
    assert!(
        stderr.contains("NO AUTH"),
        "the warning is missing: {stderr}"
    );
}

/// A force-release says who did it: the reason the holder hears (its `lock.force_released`
/// event, which `elock run` prints) names the admin token, and keeps the reason given.
#[tokio::test]
async fn a_force_release_names_who_did_it() {
    let (server, _dir) = secured_server();
    let mut events = elock_client::Client::builder(&server.url)
        .token("read-secret")
        .build()
        .unwrap()
        .events(&[elock_client::api::EventType::LockForceReleased])
        .await
        .unwrap();
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        "/api/v1/locks",
        Some("write-secret"),
        Some(json!({"resource": "r", "owner": "ci-job"})),
    )
    .await;
    assert_eq!(status, 201);
    let (status, _) = call(
        &server,
        reqwest::Method::POST,
        "/api/v1/resource/force-release",
        Some("admin-secret"),
        Some(json!({"name": "r", "reason": "maintenance"})),
    )
    .await;
    assert_eq!(status, 200);
    let item = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
        .await
        .unwrap()
        .unwrap();
    let elock_client::EventItem::Event(e) = item else {
        panic!("an event, got {item:?}")
    };
    assert_eq!(e.reason.as_deref(), Some("maintenance (by ops)"));
}
