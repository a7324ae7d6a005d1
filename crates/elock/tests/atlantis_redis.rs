//! Atlantis and elock sharing one real redis-server (`preserve-legacy-format`, docs/atlantis.md): elock's
//! Atlantis locks are written in Atlantis's layout with the grant and deleted with the release;
//! the locks Atlantis wrote (the fixture atlantis-redis.resp, in Atlantis's exact layout) are
//! held leases that elock lists and unlocks; and when Atlantis deletes or replaces its key, the
//! queue behind it is handed off, or not, as Atlantis's key says (through keyspace notifications
//! where Redis sends them, else the poll).

mod support;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use elock_atlantis::ProjectLock;
use elock_redis::testing::{unique_prefix, RedisServer};
use redis::Commands;
use serde_json::{json, Value};
use support::{Api, Server};

const TOKEN: &str = "ghp_SECRETTOKEN123";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../elock-atlantis/tests/fixtures")
        .join(name)
}

/// Writes the fixture into Redis exactly as `redis-cli --pipe` would.
fn load_atlantis_fixture(redis: &RedisServer) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", redis.port())).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&std::fs::read(fixture("atlantis-redis.resp")).unwrap())
        .unwrap();
    s.write_all(b"PING\r\n").unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(b"+PONG\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "Redis closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!String::from_utf8_lossy(&got).contains("-ERR"));
}

fn redis_conn(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(format!("redis://{}/", redis.address()))
        .unwrap()
        .get_connection()
        .unwrap()
}

/// An elock server on `redis` keeping Atlantis's keys, checking them every `poll`.
fn elock_on(redis: &RedisServer, poll: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "enhanced-locking:\n  backend: redis\n  allow-no-expiry: true\nredis:\n  \
             addresses: [\"{}\"]\n  key-prefix: \"{}\"\nbackward-compatibility:\n  \
             preserve-legacy-format: true\n  legacy-poll-interval: {poll}\n",
            redis.address(),
            unique_prefix()
        ),
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    (server, dir)
}

fn atlantis_lock(repo: &str, path: &str, pull: i64) -> Value {
    json!({
        "Project": {"ProjectName": "", "RepoFullName": repo, "Path": path},
        "Pull": {"Num": pull, "URL": format!("https://github.com/{repo}/pull/{pull}"),
                 "BaseRepo": {"FullName": repo,
                              "CloneURL": format!("https://atlantis-bot:{TOKEN}@github.com/{repo}.git")}},
        "User": {"Username": "alice", "Teams": null},
        "Workspace": "default",
        "Time": "2025-03-04T10:15:30.123456789Z"
    })
}

/// Atlantis's own JSON for a lock, as Atlantis (Go) writes it into Redis.
fn go_json(lock: &Value) -> String {
    let l: ProjectLock = serde_json::from_value(lock.clone()).unwrap();
    String::from_utf8(l.to_go_json()).unwrap()
}

/// Atlantis's try-lock through the adapter; the answer.
async fn try_lock(api: &Api, repo: &str, path: &str, pull: i64) -> Value {
    api.post("/api/atlantis/v1/try-lock", atlantis_lock(repo, path, pull))
        .await
        .1
}

async fn holder(api: &Api, resource: &str) -> Value {
    let q: String = form_urlencoded::byte_serialize(resource.as_bytes()).collect();
    api.get(&format!("/api/v1/resource?name={q}")).await.1["holder"].clone()
}

async fn until<F, Fut>(what: &str, within: Duration, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn locks_atlantis_wrote_are_held_leases_that_elock_unlocks() {
    let redis = RedisServer::start(&[]);
    load_atlantis_fixture(&redis);
    let (server, _d) = elock_on(&redis, "200ms");
    let api = server.client();

    // Every project lock of the fixture, through Atlantis's interface on elock.
    let (status, locks) = api.get("/api/atlantis/v1/locks").await;
    assert_eq!(status, 200, "{locks}");
    let keys: Vec<&String> = locks.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 8, "{keys:?}");
    assert!(locks["acme/infra/envs/prod/default/"]["Pull"]["Num"] == 42);
    // As elock leases, owned by {repo}#{pull}, without expiry.
    let h = holder(&api, "acme/infra/envs/prod/default/prod-app").await;
    assert_eq!(h["owner"], "acme/infra#43", "{h}");
    assert!(h["expires_at"].is_null());
    let h = holder(&api, "acme/infra/envs/ünïcode dir/default/").await;
    assert!(h["owner"].is_string(), "{h}");
    // The apply lock Atlantis took.
    let (_, cmd) = api.get("/api/atlantis/v1/command-lock").await;
    assert!(
        cmd["LockMetadata"]["UnixTime"].as_i64().unwrap() > 0,
        "{cmd}"
    );
    // Another pull is told who holds it, and nothing is overwritten.
    let r = try_lock(&api, "acme/infra", "envs/prod", 99).await;
    assert_eq!(r["LockAcquired"], false, "{r}");
    assert_eq!(r["CurrLock"]["Pull"]["Num"], 42);
    // A native client too.
    let (status, _) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "acme/infra/envs/prod/default/", "owner": "ci", "ttl": "1m"}),
        )
        .await;
    assert_eq!(status, 409);
    // Nothing elock shows carries the VCS token Atlantis stored.
    for path in ["/api/v1/locks", "/api/atlantis/v1/locks", "/api/locks"] {
        let (_, v) = api.get(path).await;
        assert!(!v.to_string().contains(TOKEN), "{path}: {v}");
    }

    // Unlocking through Atlantis's own endpoint on elock deletes Atlantis's key, and only it.
    let mut r = redis_conn(&redis);
    let (status, body) = api
        .delete("/locks?id=acme%252Finfra%252Fenvs%252Fprod%252Fdefault%252F")
        .await;
    assert_eq!(status, 200, "{body}");
    let gone: Option<String> = r.get("pr/acme/infra/envs/prod/default/").unwrap();
    assert!(gone.is_none());
    let kept: Option<String> = r.get("pr/acme/infra2/envs/prod/default/").unwrap();
    assert!(kept.is_some());
    let status_key: Option<String> = r.get("github.com::acme/infra::42").unwrap();
    assert!(status_key.is_some(), "pull statuses are Atlantis's alone");
    // Unlock-by-pull takes exactly that repository's locks (Atlantis's prefix bug fixed).
    let (_, out) = api
        .post(
            "/api/atlantis/v1/unlock-by-pull",
            json!({"RepoFullName": "acme/infra", "PullNum": 43}),
        )
        .await;
    assert_eq!(out.as_array().unwrap().len(), 1, "{out}");
    let gone: Option<String> = r.get("pr/acme/infra/envs/prod/default/prod-app").unwrap();
    assert!(gone.is_none());
}

#[tokio::test]
async fn elock_writes_its_atlantis_locks_in_atlantis_layout_with_the_grant_and_release() {
    let redis = RedisServer::start(&[]);
    let (server, _d) = elock_on(&redis, "200ms");
    let api = server.client();
    let mut r = redis_conn(&redis);

    let lock = atlantis_lock("acme/web", "envs/prod", 7);
    let (_, got) = api.post("/api/atlantis/v1/try-lock", lock.clone()).await;
    assert_eq!(got["LockAcquired"], true, "{got}");
    let stored: String = r.get("pr/acme/web/envs/prod/default/").unwrap();
    let mut redacted = lock.clone();
    redacted["Pull"]["BaseRepo"]["CloneURL"] =
        json!("https://atlantis-bot:<redacted>@github.com/acme/web.git");
    assert_eq!(
        stored,
        go_json(&redacted),
        "Atlantis's JSON, Go's field order"
    );
    assert!(!stored.contains(TOKEN));
    // Atlantis reading it back sees pull 7's lock.
    let back = ProjectLock::from_json(stored.as_bytes()).unwrap();
    assert_eq!(back.pull.num, 7);

    let (_, out) = api
        .post(
            "/api/atlantis/v1/unlock",
            json!({"Key": "acme/web/envs/prod/default/"}),
        )
        .await;
    assert_eq!(out["Pull"]["Num"], 7, "{out}");
    let gone: Option<String> = r.get("pr/acme/web/envs/prod/default/").unwrap();
    assert!(gone.is_none());

    // The apply lock.
    let (status, taken) = api
        .post(
            "/api/atlantis/v1/command-lock/lock",
            json!({"CommandName": 0}),
        )
        .await;
    assert_eq!(status, 200, "{taken}");
    let stored: String = r.get("global/apply/lock").unwrap();
    let unix = taken["LockMetadata"]["UnixTime"].as_i64().unwrap();
    assert_eq!(
        stored,
        format!(r#"{{"LockMetadata":{{"UnixTime":{unix}}},"CommandName":0}}"#)
    );
    let (status, _) = api
        .post("/api/atlantis/v1/command-lock/unlock", json!({}))
        .await;
    assert_eq!(status, 200);
    let gone: Option<String> = r.get("global/apply/lock").unwrap();
    assert!(gone.is_none());

    // A lease that expires takes its Atlantis key with it.
    let mut meta_lock = atlantis_lock("acme/web", "envs/dev", 8);
    meta_lock["Pull"]["BaseRepo"]["CloneURL"] = json!("https://github.com/acme/web.git");
    let (status, body) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "acme/web/envs/dev/default/", "owner": "acme/web#8",
                   "ttl": "1s", "metadata": {"atlantis": meta_lock}}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let stored: String = r.get("pr/acme/web/envs/dev/default/").unwrap();
    assert_eq!(stored, go_json(&meta_lock));
    let mut r2 = redis_conn(&redis);
    until(
        "the expired lease's key goes",
        Duration::from_secs(10),
        || {
            let v: Option<String> = r2.get("pr/acme/web/envs/dev/default/").unwrap();
            async move { v.is_none() }
        },
    )
    .await;
}

/// Atlantis deletes its lock while an elock client waits for it: the waiter gets it, and
/// Atlantis's key now says so.
async fn handoff_when_atlantis_deletes(redis: RedisServer, poll: &str) {
    let (server, _d) = elock_on(&redis, poll);
    let api = server.client();
    let mut r = redis_conn(&redis);
    let key = "acme/app/envs/prod/default/";
    let theirs = atlantis_lock("acme/app", "envs/prod", 1);
    let _: () = r.set(format!("pr/{key}"), go_json(&theirs)).unwrap();

    let mut mine = atlantis_lock("acme/app", "envs/prod", 2);
    mine["Pull"]["BaseRepo"]["CloneURL"] = json!("https://github.com/acme/app.git");
    let waiter_api = api.clone();
    let waiter_body = json!({"resource": key, "owner": "acme/app#2", "ttl": "1m",
                             "wait": "30s", "metadata": {"atlantis": mine.clone()}});
    let waiter = tokio::spawn(async move { waiter_api.post("/api/v1/locks", waiter_body).await });
    until(
        "Atlantis's lock is held and the waiter queued",
        Duration::from_secs(10),
        || {
            let api = api.clone();
            async move {
                let (_, info) = api
                    .get("/api/v1/resource?name=acme/app/envs/prod/default/")
                    .await;
                info["holder"]["owner"] == "acme/app#1"
                    && info["queue"].as_array().is_some_and(|q| q.len() == 1)
            }
        },
    )
    .await;

    // Atlantis unlocks (its Redis Unlock is a DEL).
    let deleted = Instant::now();
    let _: () = r.del(format!("pr/{key}")).unwrap();
    let (status, granted) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was handed the lock")
        .unwrap();
    assert_eq!(status, 201, "{granted}");
    assert_eq!(granted["owner"], "acme/app#2");
    let took = deleted.elapsed();
    let stored: String = r.get(format!("pr/{key}")).unwrap();
    assert_eq!(stored, go_json(&mine), "Atlantis now sees the new holder");
    let (_, events) = api.get("/api/v1/locks").await;
    assert!(events.to_string().contains("acme/app#2"));
    eprintln!("handed off {took:?} after Atlantis's delete (poll {poll})");
}

#[tokio::test]
async fn atlantis_deleting_its_lock_hands_the_queue_off_by_poll() {
    handoff_when_atlantis_deletes(RedisServer::start(&[]), "200ms").await;
}

#[tokio::test]
async fn atlantis_deleting_its_lock_hands_the_queue_off_by_keyspace_notification() {
    // The poll is a minute: only the notification can be this quick.
    let redis = RedisServer::start(&["--notify-keyspace-events", "Kg$"]);
    let start = Instant::now();
    handoff_when_atlantis_deletes(redis, "60s").await;
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn a_lock_atlantis_overwrites_is_atlantis_until_it_deletes_it() {
    let redis = RedisServer::start(&[]);
    let (server, _d) = elock_on(&redis, "100ms");
    let api = server.client();
    let mut r = redis_conn(&redis);
    let key = "acme/race/envs/prod/default/";
    let got = try_lock(&api, "acme/race", "envs/prod", 1).await;
    assert_eq!(got["LockAcquired"], true);
    let waiter_api = api.clone();
    let waiter = tokio::spawn(async move {
        waiter_api
            .post(
                "/api/v1/locks",
                json!({"resource": key, "owner": "ci", "ttl": "1m", "wait": "30s"}),
            )
            .await
    });
    until("the waiter queued", Duration::from_secs(10), || {
        let api = api.clone();
        async move {
            let (_, info) = api
                .get("/api/v1/resource?name=acme/race/envs/prod/default/")
                .await;
            info["queue"].as_array().is_some_and(|q| q.len() == 1)
        }
    })
    .await;

    // Atlantis's non-atomic TryLock overwrites the key with pull 2's lock.
    let theirs = atlantis_lock("acme/race", "envs/prod", 2);
    let _: () = r.set(format!("pr/{key}"), go_json(&theirs)).unwrap();
    until(
        "pull 2 holds it in elock too",
        Duration::from_secs(10),
        || {
            let api = api.clone();
            async move { holder(&api, key).await["owner"] == "acme/race#2" }
        },
    )
    .await;
    assert!(
        !waiter.is_finished(),
        "the waiter must not get what Atlantis holds"
    );
    let stored: String = r.get(format!("pr/{key}")).unwrap();
    assert_eq!(
        stored,
        go_json(&theirs),
        "Atlantis's key is left as Atlantis wrote it"
    );

    let _: () = r.del(format!("pr/{key}")).unwrap();
    let (status, granted) = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the waiter was handed the lock")
        .unwrap();
    assert_eq!(status, 201, "{granted}");
    // The waiter's lease carries no Atlantis lock (no metadata.atlantis), so Atlantis's key is
    // not written for it (docs/atlantis.md); the resource is still elock's until released.
    let refused = try_lock(&api, "acme/race", "envs/prod", 3).await;
    assert_eq!(refused["LockAcquired"], false, "{refused}");
}

#[tokio::test]
async fn an_import_of_atlantis_bbolt_file_writes_atlantis_redis_layout_too() {
    let redis = RedisServer::start(&[]);
    let (server, _d) = elock_on(&redis, "1s");
    let file = fixture("atlantis-small.db");
    let (code, out) = server.cli(&["atlantis", "import-boltdb", file.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    let mut r = redis_conn(&redis);
    let mut keys: Vec<String> = r.keys("pr/*").unwrap();
    keys.sort();
    assert_eq!(keys.len(), 8, "{keys:?}");
    // The legacy three-part lock is kept under its current key, as Atlantis's migration would.
    assert!(
        keys.contains(&"pr/acme/legacy/./default/".to_string()),
        "{keys:?}"
    );
    let apply: Option<String> = r.get("global/apply/lock").unwrap();
    assert!(apply.is_some());
    let v: String = r.get("pr/acme/infra/envs/prod/default/").unwrap();
    assert!(
        !v.contains(TOKEN) && v.contains("\\u003credacted\\u003e"),
        "{v}"
    );
}

/// Every lease on an Atlantis key has Atlantis's record while it lasts, whatever took it: the
/// CLI (owner `{repo}#{pull}`: Atlantis sees that pull), the native API with several resources
/// (each key written; a resource that is no Atlantis key is not), `elock run` (any owner: pull 0,
/// the owner named). Releasing deletes every record; Atlantis deleting a record releases the
/// lease that wrote it.
#[tokio::test]
async fn every_lease_on_an_atlantis_key_is_visible_to_atlantis() {
    let redis = RedisServer::start(&[]);
    let (server, _d) = elock_on(&redis, "100ms");
    let api = server.client();
    let mut r = redis_conn(&redis);
    let record = |r: &mut redis::Connection, key: &str| -> Option<ProjectLock> {
        let v: Option<String> = r.get(format!("pr/{key}")).unwrap();
        v.map(|v| ProjectLock::from_json(v.as_bytes()).unwrap())
    };

    // The CLI.
    let key = "acme/infra/envs/prod/default/";
    let (code, out) = server.cli(&["lock", key, "--owner", "acme/infra#42", "--output", "json"]);
    assert_eq!(code, 0, "{out}");
    let lease: Value = serde_json::from_str(&out).unwrap();
    let seen = record(&mut r, key).expect("Atlantis's record of a CLI lock");
    assert_eq!(
        (seen.pull.num, seen.project.path.as_str()),
        (42, "envs/prod")
    );
    assert_eq!(elock_atlantis::LockKey::of(&seen).to_string(), key);
    // Atlantis's adapter view agrees: another pull is refused.
    assert_eq!(
        try_lock(&api, "acme/infra", "envs/prod", 43).await["LockAcquired"],
        false
    );
    let (code, _) = server.cli(&["unlock", lease["id"].as_str().unwrap()]);
    assert_eq!(code, 0);
    assert!(
        record(&mut r, key).is_none(),
        "released: the record is gone"
    );

    // The native API, several resources.
    let (a, b) = (
        "acme/infra/envs/a/default/",
        "acme/infra/envs/b/default/app",
    );
    let (status, body) = api
        .post(
            "/api/v1/locks",
            json!({"resources": [a, b, "plain-resource"], "owner": "deploy-bot", "ttl": "1m"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let (ra, rb) = (record(&mut r, a).unwrap(), record(&mut r, b).unwrap());
    assert_eq!(
        (ra.pull.num, ra.user.username.as_str()),
        (0, "deploy-bot (elock)")
    );
    assert_eq!(rb.project.project_name, "app");
    let keys: Vec<String> = r.keys("pr/*").unwrap();
    assert_eq!(keys.len(), 2, "only Atlantis keys: {keys:?}");
    // Atlantis deletes one of them (its unlock button): the lease that wrote it is released,
    // and its other record goes with it.
    let _: () = r.del(format!("pr/{b}")).unwrap();
    let mut r2 = redis_conn(&redis);
    until(
        "Atlantis's delete releases the lease",
        Duration::from_secs(5),
        || {
            let v: Option<String> = r2.get(format!("pr/{a}")).unwrap();
            async move { v.is_none() }
        },
    )
    .await;
    assert!(holder(&api, a).await.is_null());

    // elock run.
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["run", key, "--owner", "ci-runner", "--", "sleep", "1"])
        .env("ELOCK_SERVER", &server.url)
        .spawn()
        .unwrap();
    until(
        "elock run's lock is visible",
        Duration::from_secs(5),
        || {
            let v: Option<String> = r2.get(format!("pr/{key}")).unwrap();
            async move { v.is_some() }
        },
    )
    .await;
    assert_eq!(
        record(&mut r, key).unwrap().user.username,
        "ci-runner (elock)"
    );
    let status = tokio::task::spawn_blocking(move || {
        let mut c = child;
        c.wait().unwrap()
    })
    .await
    .unwrap();
    assert!(status.success());
    assert!(
        record(&mut r, key).is_none(),
        "the run's record goes with its lock"
    );
}

/// `elock compare-backends` counts leases on Atlantis keys taken outside Atlantis: beside an
/// Atlantis Redis that has no record of it, such a lease is a difference; sharing the Redis
/// (elock writes the record), there is none.
#[tokio::test]
async fn compare_backends_reports_leases_on_atlantis_keys_without_atlantiss_record() {
    let key = "acme/infra/envs/prod/default/";
    // An embedded elock beside an Atlantis Redis that knows nothing of the lease.
    let atlantis_redis = RedisServer::start(&[]);
    let embedded = Server::start();
    let (code, out) = embedded.cli(&["lock", key, "--owner", "acme/infra#42"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = embedded.cli(&[
        "--output",
        "json",
        "compare-backends",
        "--legacy-redis",
        &atlantis_redis.address(),
    ]);
    assert_eq!(code, 1, "{out}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let diffs = report["differences"].as_array().unwrap();
    assert_eq!(diffs.len(), 1, "{report}");
    assert_eq!(diffs[0]["key"], key);
    assert!(
        diffs[0]["kind"]
            .as_str()
            .unwrap()
            .contains("taken outside Atlantis"),
        "{report}"
    );
    assert_eq!(diffs[0]["elock"]["holder"], "acme/infra#42");

    // Sharing the Redis: elock wrote Atlantis's record with the grant.
    let redis = RedisServer::start(&[]);
    let (shared, _d) = elock_on(&redis, "200ms");
    let (code, out) = shared.cli(&["lock", key, "--owner", "acme/infra#42"]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = shared.cli(&["compare-backends", "--legacy-redis", &redis.address()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 difference(s)"), "{out}");
}
