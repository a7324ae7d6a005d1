//! Several real `elock serve` processes sharing one real redis-server: mutual exclusion across
//! servers with fencing tokens checked, handoff from a lease on one server to a waiter on the
//! other, and a Redis restart with `appendfsync always` that loses no acknowledged lease.

mod support;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use elock_redis::testing::{unique_prefix, RedisServer};
use serde_json::{json, Value};
use support::Server;

fn lease_id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// An elock server on the Redis at `redis` under `prefix` (its own data dir holds only audit).
fn elock_on(redis: &RedisServer, prefix: &str) -> (Server, tempfile::TempDir) {
    elock_with(redis, prefix, "")
}

/// The same, with more lines of the `redis:` section (indented by two spaces).
fn elock_with(redis: &RedisServer, prefix: &str, more: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "enhanced-locking:\n  backend: redis\nredis:\n  addresses: [\"{}\"]\n  key-prefix: \"{prefix}\"\n{more}",
            redis.address()
        ),
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    (server, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_over_two_servers_never_share_a_critical_section() {
    let redis = RedisServer::start(&[]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(&redis, &prefix);
    let (b, _db) = elock_on(&redis, &prefix);
    let total = support::mutual_exclusion_run(&[a.client(), b.client()]).await;
    assert_eq!(total, 300, "every grant minted exactly one token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_on_one_server_hands_off_to_a_waiter_on_the_other() {
    let redis = RedisServer::start(&[]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(&redis, &prefix);
    let (b, _db) = elock_on(&redis, &prefix);
    let (status, first) = a
        .client()
        .post("/api/v1/locks", json!({"resource": "hot", "owner": "on-a"}))
        .await;
    assert_eq!(status, 201, "{first}");
    let api_b = b.client();
    let waiter = tokio::spawn(async move {
        let r = api_b
            .post(
                "/api/v1/locks",
                json!({"resource": "hot", "owner": "on-b", "wait": "20s"}),
            )
            .await;
        (r, Instant::now())
    });
    // Let the waiter's ticket reach the queue on server B.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, info) = a.client().get("/api/v1/resource?name=hot").await;
        if info["queue"].as_array().is_some_and(|q| !q.is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "the waiter never queued: {info}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = Instant::now();
    let (status, _) = a
        .client()
        .delete(&format!("/api/v1/locks/{}", lease_id(&first)))
        .await;
    assert_eq!(status, 200);
    let ((status, lease), granted) = waiter.await.unwrap();
    assert_eq!(status, 201, "{lease}");
    assert_eq!(lease["owner"], "on-b");
    assert_eq!(lease["resources"][0]["fencing_token"], 2);
    let took = granted.duration_since(released);
    // Pub/sub wakes the waiter; the 1 s re-check is only the fallback.
    assert!(took < Duration::from_millis(500), "handoff took {took:?}");
    // The Redis gauges (docs/metrics.md) are exported, read from INFO.
    let metrics = b.metrics().await;
    let used: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("atlantis_enhanced_locking_redis_memory_used_bytes "))
        .unwrap_or_else(|| panic!("no Redis memory gauge in {metrics}"))
        .trim()
        .parse()
        .unwrap();
    assert!(used > 0);
    assert!(metrics.contains("atlantis_enhanced_locking_redis_pool_max_connections 20"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_with_appendfsync_always_loses_no_acknowledged_lease() {
    let mut redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let prefix = unique_prefix();
    let (server, _d) = elock_on(&redis, &prefix);
    let api = server.client();
    let mut held = HashMap::new();
    for i in 0..40 {
        let (status, lease) = api
            .post(
                "/api/v1/locks",
                json!({"resource": format!("r{i}"), "owner": "keeper", "ttl": "10m"}),
            )
            .await;
        assert_eq!(status, 201, "{lease}");
        held.insert(
            format!("r{i}"),
            lease["resources"][0]["fencing_token"].as_u64().unwrap(),
        );
    }
    redis.kill();
    // While Redis is down, calls fail with backend_unavailable rather than hanging or lying.
    let (status, body) = api
        .post("/api/v1/locks", json!({"resource": "down", "owner": "x"}))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "backend_unavailable", "{body}");
    redis.restart();
    // The connection comes back by itself; every acknowledged lease is still held.
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let (status, body) = api.get("/api/v1/locks?owner=keeper").await;
        if status == 200 {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not recover: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leases = listed["locks"].as_array().expect("a lease list");
    assert_eq!(leases.len(), 40, "{listed}");
    for l in leases {
        let r = l["resources"][0]["resource"].as_str().unwrap();
        assert_eq!(
            l["resources"][0]["fencing_token"].as_u64(),
            held.get(r).copied()
        );
    }
    // Fencing counters survived too: the next grant of r0 mints a higher token.
    let (_, r0) = api.get("/api/v1/resource?name=r0").await;
    let (status, _) = api
        .delete(&format!(
            "/api/v1/locks/{}",
            r0["holder"]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200);
    let (status, again) = api
        .post("/api/v1/locks", json!({"resource": "r0", "owner": "next"}))
        .await;
    assert_eq!(status, 201, "{again}");
    assert!(again["resources"][0]["fencing_token"].as_u64().unwrap() > held["r0"]);
}

/// Two servers, A and B, on one Redis with a 2 s node timeout (short for a test, long enough
/// that a loaded machine's late beat does not make a living server look dead): "holder" holds `hot` through A,
/// and "on-b" waits for it through B (queued when this returns).
struct HeldWithWaiterOnB {
    a: Server,
    b: Server,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    first: Value,
    waiter: tokio::task::JoinHandle<(u16, Value)>,
}

async fn held_with_a_waiter_on_b(redis: &RedisServer) -> HeldWithWaiterOnB {
    let prefix = unique_prefix();
    let (a, da) = elock_with(redis, &prefix, "  node-timeout: 2s\n");
    let (b, db) = elock_with(redis, &prefix, "  node-timeout: 2s\n");
    let (status, first) = a
        .client()
        .post(
            "/api/v1/locks",
            json!({"resource": "hot", "owner": "holder", "ttl": "60s"}),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let api_b = b.client();
    let waiter = tokio::spawn(async move {
        api_b
            .post(
                "/api/v1/locks",
                json!({"resource": "hot", "owner": "on-b", "wait": "30s", "ttl": "60s"}),
            )
            .await
    });
    wait_for_queue(&a.client(), &["on-b"]).await;
    HeldWithWaiterOnB {
        a,
        b,
        _dirs: (da, db),
        first,
        waiter,
    }
}

/// Waits (8 s at most) until the queue of `hot` is exactly `owners`, in order.
async fn wait_for_queue(api: &support::Api, owners: &[&str]) {
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let (_, info) = api.get("/api/v1/resource?name=hot").await;
        let queue: Vec<&str> = info["queue"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t["owner"].as_str())
            .collect();
        if queue == owners {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the queue is not {owners:?}: {info}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A waiter connected to a server that dies (kill -9) is never granted: once that server has
/// missed its heartbeat for `redis.node-timeout`, the other server cancels its ticket and hands
/// the resource to the next live waiter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_waiters_of_a_dead_server_are_cancelled_by_the_living_one() {
    let redis = RedisServer::start(&[]);
    let s = held_with_a_waiter_on_b(&redis).await;
    let api_a = s.a.client();
    let live = {
        let api_a = api_a.clone();
        tokio::spawn(async move {
            api_a
                .post(
                    "/api/v1/locks",
                    json!({"resource": "hot", "owner": "on-a", "wait": "30s"}),
                )
                .await
        })
    };
    wait_for_queue(&api_a, &["on-b", "on-a"]).await;
    s.b.kill_9();
    s.waiter.abort();
    // The dead server's waiter leaves the queue within the timeout and a beat or two.
    wait_for_queue(&api_a, &["on-a"]).await;
    let (status, _) = api_a
        .delete(&format!("/api/v1/locks/{}", lease_id(&s.first)))
        .await;
    assert_eq!(status, 200);
    let (status, lease) = live.await.unwrap();
    assert_eq!(
        (status, lease["owner"].as_str()),
        (201, Some("on-a")),
        "{lease}"
    );
}

/// A release that hands the resource to the waiter of a server that just died (before its
/// heartbeat ran out) grants a lease nobody will take; when the heartbeat runs out that lease is
/// released (`client_gone`) and the resource goes on to live clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handoff_to_a_dead_servers_waiter_is_released() {
    let redis = RedisServer::start(&[]);
    let s = held_with_a_waiter_on_b(&redis).await;
    let api_a = s.a.client();
    s.b.kill_9();
    s.waiter.abort();
    // Released at once: the dead server's waiter is handed the lease.
    let (status, _) = api_a
        .delete(&format!("/api/v1/locks/{}", lease_id(&s.first)))
        .await;
    assert_eq!(status, 200);
    assert_eq!(api_a.holder("hot").await["owner"], "on-b");
    // A live client waits; it gets the resource once the dead server's heartbeat runs out,
    // long before the 60 s ttl of the undelivered lease.
    let started = Instant::now();
    let (status, lease) = api_a
        .post(
            "/api/v1/locks",
            json!({"resource": "hot", "owner": "live", "wait": "20s"}),
        )
        .await;
    assert_eq!(
        (status, lease["owner"].as_str()),
        (201, Some("live")),
        "{lease}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
}

/// Redis frozen for longer than the node timeout (3.5 s against 2 s): no server could beat, so none is taken for
/// dead when Redis comes back; the waiters of living servers keep their place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_redis_does_not_make_living_servers_look_dead() {
    let redis = RedisServer::start(&[]);
    let s = held_with_a_waiter_on_b(&redis).await;
    let api_a = s.a.client();
    let pid = nix::unistd::Pid::from_raw(redis.pid().unwrap() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    tokio::time::sleep(Duration::from_millis(3500)).await;
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    // Several beats after Redis is back: B's waiter is still there, and is handed the lock.
    tokio::time::sleep(Duration::from_millis(2000)).await;
    wait_for_queue(&api_a, &["on-b"]).await;
    let (status, _) = api_a
        .delete(&format!("/api/v1/locks/{}", lease_id(&s.first)))
        .await;
    assert_eq!(status, 200);
    let (status, lease) = s.waiter.await.unwrap();
    assert_eq!(
        (status, lease["owner"].as_str()),
        (201, Some("on-b")),
        "{lease}"
    );
}
