//! Faults between elock servers and Redis: connections killed under the servers' feet (commands
//! and the event subscription), a pub/sub message lost, a Redis too slow to answer. Through all
//! of them: calls fail cleanly or succeed, waiters are never stranded, and nothing is ever
//! granted twice.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elock_redis::testing::{raw_command, unique_prefix, RedisServer};
use serde_json::{json, Value};
use support::{Api, Server};

/// An elock server on the Redis at `redis` under `prefix`, with `extra` YAML appended.
fn elock_on(redis: &RedisServer, prefix: &str, extra: &str) -> (Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "enhanced-locking:\n  backend: redis\nredis:\n  addresses: [\"{}\"]\n  key-prefix: \"{prefix}\"\n{extra}",
            redis.address()
        ),
    )
    .unwrap();
    let server = Server::start_with(dir.path(), &["--config", config.to_str().unwrap()]);
    (server, dir)
}

/// Kills every client connection of `kind` (`normal` or `pubsub`); returns how many.
fn kill_clients(redis: &RedisServer, kind: &str) -> usize {
    let out = raw_command(redis.port(), &["CLIENT", "KILL", "TYPE", kind]).unwrap();
    out.trim().trim_start_matches(':').parse().unwrap_or(0)
}

/// Subscribers of the single shard's event channel.
fn subscribers(redis: &RedisServer, prefix: &str) -> usize {
    let channel = format!("{prefix}{{0}}:events");
    let out = raw_command(redis.port(), &["PUBSUB", "NUMSUB", &channel]).unwrap();
    // *2 $len channel :n
    out.lines()
        .filter_map(|l| l.strip_prefix(':'))
        .next_back()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

async fn queue_len(api: &Api, resource: &str) -> usize {
    let (_, info) = api.get(&format!("/api/v1/resource?name={resource}")).await;
    info["queue"].as_array().map_or(0, Vec::len)
}

/// Holds `resource` on `a`, queues a waiter on `b`, runs `before_release`, releases on `a`, and
/// returns how long the waiter took to be granted after the release.
async fn handoff(a: &Api, b: &Api, resource: &str, before_release: impl FnOnce()) -> Duration {
    let (status, first) = a
        .post(
            "/api/v1/locks",
            json!({"resource": resource, "owner": "on-a"}),
        )
        .await;
    assert_eq!(status, 201, "{first}");
    let b2 = b.clone();
    let r = resource.to_string();
    let waiter = tokio::spawn(async move {
        let out = b2
            .post(
                "/api/v1/locks",
                json!({"resource": r, "owner": "on-b", "wait": "30s"}),
            )
            .await;
        (out, Instant::now())
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while queue_len(a, resource).await == 0 {
        if waiter.is_finished() {
            panic!("the waiter did not wait: {:?}", waiter.await.unwrap().0);
        }
        assert!(Instant::now() < deadline, "the waiter never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    before_release();
    let released = Instant::now();
    let id = first["id"].as_str().unwrap();
    let (status, body) = a.delete(&format!("/api/v1/locks/{id}")).await;
    assert_eq!(status, 200, "{body}");
    let ((status, lease), granted) = waiter.await.unwrap();
    assert_eq!(status, 201, "{lease}");
    assert_eq!(lease["owner"], "on-b");
    granted.duration_since(released)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_reconnect_and_the_servers_resubscribe() {
    let redis = RedisServer::start(&[]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(&redis, &prefix, "");
    let (b, _db) = elock_on(&redis, &prefix, "");
    let (api_a, api_b) = (a.client(), b.client());
    let took = handoff(&api_a, &api_b, "warm", || {}).await;
    assert!(took < Duration::from_millis(500), "{took:?}");
    assert_eq!(subscribers(&redis, &prefix), 2);

    assert!(kill_clients(&redis, "pubsub") >= 2);
    assert!(kill_clients(&redis, "normal") >= 2);
    // Both servers subscribe again by themselves.
    let deadline = Instant::now() + Duration::from_secs(10);
    while subscribers(&redis, &prefix) < 2 {
        assert!(Instant::now() < deadline, "the servers did not resubscribe");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Commands work again (the first call after the kill may be the one that notices).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = api_a.get("/api/v1/locks").await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "server A never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // And a handoff across servers is woken by the message again, not by the re-check.
    let took = handoff(&api_a, &api_b, "after-kill", || {}).await;
    assert!(took < Duration::from_millis(500), "handoff took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_message_delays_a_waiter_by_at_most_the_recheck() {
    let redis = RedisServer::start(&[]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(&redis, &prefix, "");
    let (b, _db) = elock_on(&redis, &prefix, "");
    let (api_a, api_b) = (a.client(), b.client());
    let mut lost = false;
    let took = handoff(&api_a, &api_b, "lost", || {
        // Cut the subscriptions and release while nobody is subscribed: the message of the
        // grant goes to no one.
        for _ in 0..50 {
            kill_clients(&redis, "pubsub");
            if subscribers(&redis, &prefix) == 0 {
                lost = true;
                return;
            }
        }
    })
    .await;
    assert!(lost, "could not release while nobody was subscribed");
    // The waiter re-reads its ticket every second: it learns of the grant within about that.
    assert!(
        took < Duration::from_millis(1800),
        "a lost message delayed the waiter by {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_opens_the_breaker_and_recovery_closes_it() {
    let redis = RedisServer::start(&["--enable-debug-command", "yes"]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(
        &redis,
        &prefix,
        "circuit-breaker: {enabled: true, failure-threshold: 3, success-threshold: 1, timeout: 2s}\n",
    );
    let api = a.client();
    let (status, _) = api
        .post("/api/v1/locks", json!({"resource": "before", "owner": "x"}))
        .await;
    assert_eq!(status, 201);
    // Redis stops answering for 7 s (longer than the 5 s response timeout).
    let port = redis.port();
    std::thread::spawn(move || {
        let _ = raw_command(port, &["DEBUG", "SLEEP", "7"]);
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let mut calls = Vec::new();
    for i in 0..4 {
        let api = api.clone();
        calls.push(tokio::spawn(async move {
            api.post(
                "/api/v1/locks",
                json!({"resource": format!("slow-{i}"), "owner": "x"}),
            )
            .await
        }));
    }
    for c in calls {
        let (status, body) = c.await.unwrap();
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"]["code"], "backend_unavailable", "{body}");
    }
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "calls waited for Redis"
    );
    // Three failures opened the breaker: the next call fails at once, naming it.
    let t = Instant::now();
    let (status, body) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "fast-fail", "owner": "x"}),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "an open breaker fails fast"
    );
    assert!(body.to_string().contains("open"), "{body}");
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("atlantis_enhanced_locking_circuit_breaker_state 1"),
        "the breaker is open on /metrics"
    );
    // Redis answers again; after the breaker's timeout a trial call closes it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, _) = api
            .post("/api/v1/locks", json!({"resource": "after", "owner": "x"}))
            .await;
        if status == 201 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, info) = api.get("/api/v1/resource?name=before").await;
    assert_eq!(status, 200);
    assert_eq!(
        info["holder"]["owner"], "x",
        "the lease from before is still held"
    );
}

/// Mutual exclusion across two servers for 4 s while every connection to Redis is killed every
/// 250 ms:
/// calls may fail (and are retried by the client), but no two critical sections overlap and
/// fencing tokens never go back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_granted_twice_while_connections_are_killed() {
    let redis = RedisServer::start(&[]);
    let prefix = unique_prefix();
    let (a, _da) = elock_on(&redis, &prefix, "");
    let (b, _db) = elock_on(&redis, &prefix, "");
    let apis = [a.client(), b.client()];
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (stop, port) = (stop.clone(), redis.port());
        std::thread::spawn(move || {
            let mut kills = 0;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(250));
                for kind in ["normal", "pubsub"] {
                    if raw_command(port, &["CLIENT", "KILL", "TYPE", kind]).is_ok() {
                        kills += 1;
                    }
                }
            }
            kills
        })
    };
    type Occupancy = HashMap<String, (Option<usize>, u64)>;
    let inside: Arc<Mutex<Occupancy>> = Arc::default();
    let failures = Arc::new(Mutex::new(0u32));
    let started = Instant::now();
    // At least 4 s and 120 critical sections (a loaded machine needs longer for them), at most
    // 20 s.
    let total = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for c in 0..20usize {
        let (api, inside, failures) = (apis[c % 2].clone(), inside.clone(), failures.clone());
        let total = total.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            while (started.elapsed() < Duration::from_secs(4) || total.load(Ordering::Relaxed) < 120)
                && started.elapsed() < Duration::from_secs(20)
            {
                let resource = format!("proj/{}", (c + done) % 4);
                let (status, lease) = api
                    .post(
                        "/api/v1/locks",
                        json!({"resource": resource, "owner": format!("c{c}"), "wait": "20s", "ttl": "20s"}),
                    )
                    .await;
                if status != 201 {
                    *failures.lock().unwrap() += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let token = lease["resources"][0]["fencing_token"].as_u64().unwrap();
                {
                    let mut map = inside.lock().unwrap();
                    let e = map.entry(resource.clone()).or_insert((None, 0));
                    assert!(e.0.is_none(), "c{c} entered {resource} while c{:?} was inside", e.0);
                    assert!(token > e.1, "{resource}: token {token} after {}", e.1);
                    *e = (Some(c), token);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                inside.lock().unwrap().get_mut(&resource).unwrap().0 = None;
                let id = lease["id"].as_str().unwrap().to_string();
                // A release lost to a killed connection: the lease stays held until it is
                // released on a retry or expires, never handed to two.
                for _ in 0..20 {
                    let (status, _): (u16, Value) = api.delete(&format!("/api/v1/locks/{id}")).await;
                    if status == 200 || status == 404 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                done += 1;
                total.fetch_add(1, Ordering::Relaxed);
            }
            done
        }));
    }
    let mut sections = 0;
    for t in tasks {
        sections += t.await.unwrap();
    }
    assert!(sections > 100, "only {sections} critical sections");
    stop.store(true, Ordering::Relaxed);
    let kills = killer.join().unwrap();
    assert!(kills >= 4, "the connections were killed {kills} times");
    eprintln!(
        "{sections} critical sections, {kills} kills, {} failed calls retried",
        failures.lock().unwrap()
    );
}
