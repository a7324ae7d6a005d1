//! The migration modes (docs/migration.md) on a real server with a real redis-server as the legacy store
//! (Atlantis's lock storage in Redis): `shadow` serves from the legacy store, mirrors to elock
//! and reports differences; `split` sends a stable share of keys to elock and the rest to the
//! legacy store, and still finds locks after the percentage changes; `enhanced` is elock only.
//! `elock compare-backends` and `elock validate-consistency` report every difference.

mod support;

use std::path::{Path, PathBuf};

use elock_redis::testing::RedisServer;
use redis::Commands;
use serde_json::{json, Value};
use support::Server;

fn serve(dir: &Path, mode: &str, pct: u8, legacy: &RedisServer) -> Server {
    let config = dir.join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "enhanced-locking:\n  allow-no-expiry: true\nmigration:\n  mode: {mode}\n  \
             traffic-percentage: {pct}\n  legacy-redis: \"{}\"\n",
            legacy.address()
        ),
    )
    .unwrap();
    Server::start_with(dir, &["--config", config.to_str().unwrap()])
}

fn lock(repo: &str, path: &str, pull: i64) -> Value {
    json!({
        "Project": {"ProjectName": "", "RepoFullName": repo, "Path": path},
        "Pull": {"Num": pull, "URL": format!("https://github.com/{repo}/pull/{pull}")},
        "User": {"Username": "alice", "Teams": null},
        "Workspace": "default",
        "Time": "2025-03-04T10:15:30.123456789Z"
    })
}

fn key(repo: &str, path: &str) -> String {
    format!("{repo}/{path}/default/")
}

fn conn(r: &RedisServer) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", r.address()))
        .unwrap()
        .get_connection()
        .unwrap()
}

fn legacy_has(c: &mut redis::Connection, key: &str) -> bool {
    c.exists(format!("pr/{key}")).unwrap()
}

async fn elock_has(server: &Server, key: &str) -> bool {
    let q: String = form_urlencoded::byte_serialize(key.as_bytes()).collect();
    !server
        .client()
        .get(&format!("/api/v1/resource?name={q}"))
        .await
        .1["holder"]
        .is_null()
}

#[tokio::test]
async fn shadow_serves_from_the_legacy_store_mirrors_to_elock_and_reports_differences() {
    let legacy = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "shadow", 0, &legacy);
    let api = server.client();
    let mut c = conn(&legacy);

    let (_, r) = api
        .post("/api/atlantis/v1/try-lock", lock("acme/infra", "a", 1))
        .await;
    assert_eq!(r["LockAcquired"], true, "{r}");
    assert!(legacy_has(&mut c, &key("acme/infra", "a")));
    assert!(
        elock_has(&server, &key("acme/infra", "a")).await,
        "mirrored"
    );
    let (code, out) = server.cli(&["compare-backends", "--legacy-redis", &legacy.address()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 difference(s)"), "{out}");

    // Atlantis (or anyone) writes to the legacy store behind elock's back: the legacy store
    // still decides, and the difference is counted and kept.
    let theirs = serde_json::to_string(&lock("acme/infra", "b", 5)).unwrap();
    let _: () = c
        .set(format!("pr/{}", key("acme/infra", "b")), theirs)
        .unwrap();
    let (_, r) = api
        .post("/api/atlantis/v1/try-lock", lock("acme/infra", "b", 6))
        .await;
    assert_eq!(r["LockAcquired"], false, "{r}");
    assert_eq!(r["CurrLock"]["Pull"]["Num"], 5);
    let (_, state) = api.get("/api/atlantis/v1/migration").await;
    assert_eq!(state["mode"], "shadow");
    assert_eq!(state["stats"]["mismatches"], 1, "{state}");
    assert_eq!(state["stats"]["recent"][0]["operation"], "try-lock");
    assert_eq!(state["stats"]["recent"][0]["legacy"], "false acme/infra#5");
    assert_eq!(state["stats"]["recent"][0]["elock"], "true acme/infra#6");

    let (code, out) = server.cli(&["compare-backends", "--legacy-redis", &legacy.address()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("held by different pulls"), "{out}");
    let (code, out) = server.cli(&[
        "--output",
        "json",
        "validate-consistency",
        "--legacy-redis",
        &legacy.address(),
    ]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["violations"][0]["rule"]
            .as_str()
            .unwrap()
            .starts_with("held twice"),
        "{report}"
    );

    // Unlocking goes to both; the list is the legacy store's.
    let (_, out) = api
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Key": key("acme/infra", "a")}),
        )
        .await;
    assert_eq!(out["Pull"]["Num"], 1, "{out}");
    assert!(!legacy_has(&mut c, &key("acme/infra", "a")));
    assert!(!elock_has(&server, &key("acme/infra", "a")).await);
    let (_, list) = api.get("/api/atlantis/v1/locks").await;
    assert_eq!(list[key("acme/infra", "b")]["Pull"]["Num"], 5, "{list}");
}

#[tokio::test]
async fn split_sends_a_stable_share_to_elock_and_finds_locks_after_a_change() {
    let legacy = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "split", 50, &legacy);
    let api = server.client();
    let mut c = conn(&legacy);
    let paths: Vec<String> = (0..40).map(|i| format!("p{i}")).collect();
    let mut in_elock = Vec::new();
    for p in &paths {
        let (_, r) = api
            .post("/api/atlantis/v1/try-lock", lock("acme/split", p, 1))
            .await;
        assert_eq!(r["LockAcquired"], true, "{r}");
        let k = key("acme/split", p);
        let (a, b) = (legacy_has(&mut c, &k), elock_has(&server, &k).await);
        assert!(
            a != b,
            "{k}: exactly one store holds it (legacy {a}, elock {b})"
        );
        if b {
            in_elock.push(p.clone());
        }
    }
    assert!(
        (10..=30).contains(&in_elock.len()),
        "about half go to elock: {}",
        in_elock.len()
    );
    // Another pull is refused wherever the lock is; the list shows both stores.
    for p in &paths[..5] {
        let (_, r) = api
            .post("/api/atlantis/v1/try-lock", lock("acme/split", p, 2))
            .await;
        assert_eq!(r["LockAcquired"], false, "{r}");
        assert_eq!(r["CurrLock"]["Pull"]["Num"], 1);
    }
    let (_, list) = api.get("/api/atlantis/v1/locks").await;
    assert_eq!(list.as_object().unwrap().len(), 40);
    let (code, out) = server.cli(&["validate-consistency", "--legacy-redis", &legacy.address()]);
    assert_eq!(code, 0, "{out}");

    // All traffic to elock now: locks still in the legacy store are found and unlocked there.
    drop(server);
    let server = serve(dir.path(), "split", 100, &legacy);
    let api = server.client();
    let (code, out) = server.cli(&["validate-consistency", "--legacy-redis", &legacy.address()]);
    assert_eq!(code, 1, "legacy locks are now routed to elock: {out}");
    assert!(
        out.contains("routed to elock, but held in the legacy store"),
        "{out}"
    );
    let (_, got) = api
        .post(
            "/api/atlantis/v1/unlock-by-pull",
            json!({"RepoFullName": "acme/split", "PullNum": 1}),
        )
        .await;
    assert_eq!(got.as_array().unwrap().len(), 40, "{got}");
    let left: Vec<String> = c.keys("pr/*").unwrap();
    assert!(left.is_empty(), "{left:?}");
    // New locks all go to elock.
    let (_, r) = api
        .post("/api/atlantis/v1/try-lock", lock("acme/split", "new", 3))
        .await;
    assert_eq!(r["LockAcquired"], true);
    assert!(!legacy_has(&mut c, &key("acme/split", "new")));
    let (_, state) = api.get("/api/atlantis/v1/migration").await;
    assert!(
        state["stats"]["served_by_elock"].as_u64().unwrap() >= 1,
        "{state}"
    );
}

#[tokio::test]
async fn enhanced_is_elock_only_and_compare_backends_reads_the_bbolt_file() {
    let legacy = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), "enhanced", 0, &legacy);
    let api = server.client();
    let mut c = conn(&legacy);
    let (_, r) = api
        .post("/api/atlantis/v1/try-lock", lock("acme/e", "x", 1))
        .await;
    assert_eq!(r["LockAcquired"], true);
    assert!(!legacy_has(&mut c, &key("acme/e", "x")));
    let (_, out) = api
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Key": key("acme/e", "x")}),
        )
        .await;
    assert_eq!(out["Pull"]["Num"], 1);

    // Before the import, every lock of Atlantis's file is missing from elock; after, none.
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../elock-atlantis/tests/fixtures/atlantis-small.db");
    let file = file.to_str().unwrap();
    let (code, out) = server.cli(&[
        "--output",
        "json",
        "compare-backends",
        "--legacy-boltdb",
        file,
    ]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(
        diffs.len(),
        9,
        "8 project locks and the apply lock: {report}"
    );
    assert!(diffs
        .iter()
        .all(|d| d["kind"] == "only in the legacy store"));
    let (code, out) = server.cli(&["atlantis", "import-boltdb", file]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = server.cli(&["compare-backends", "--legacy-boltdb", file]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("legacy store: 9 lock(s); elock: 9 lock(s); 0 difference(s)"),
        "{out}"
    );
    // Without a legacy store, the commands say what to give.
    let (code, _) = server.cli(&["compare-backends"]);
    assert_ne!(code, 0);
}
