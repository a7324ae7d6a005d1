//! Black-box tests of `elock serve`: the real binary on a free port, driven over HTTP and
//! through the CLI.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::Server;

fn lease_id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_on_ten_resources_never_share_a_critical_section() {
    let server = Server::start();
    let total = support::mutual_exclusion_run(&[server.client()]).await;
    assert_eq!(total, 300, "every grant minted exactly one token");
}

#[tokio::test]
async fn twenty_waiters_of_mixed_priority_are_granted_in_queue_order() {
    let server = Server::start();
    let api = server.client();
    let (_, first) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "hot", "owner": "holder"}),
        )
        .await;
    let priorities = ["low", "normal", "high", "critical"];
    let mut expected: Vec<(usize, usize, String)> = Vec::new();
    for i in 0..20usize {
        let p = (i * 7) % 4;
        let owner = format!("w{i:02}");
        let (status, t) = api
            .post("/api/v1/locks", json!({"resource": "hot", "owner": owner, "priority": priorities[p], "wait": "1m", "detach": true}))
            .await;
        assert_eq!(status, 202, "{t}");
        expected.push((3 - p, i, owner));
    }
    expected.sort();
    let mut current = lease_id(&first);
    let mut order = Vec::new();
    for _ in 0..20 {
        api.delete(&format!("/api/v1/locks/{current}")).await;
        let holder = api.holder("hot").await;
        order.push(holder["owner"].as_str().unwrap().to_string());
        current = lease_id(&holder);
    }
    let expected: Vec<String> = expected.into_iter().map(|(_, _, o)| o).collect();
    assert_eq!(order, expected);
}

#[tokio::test]
async fn expiry_hands_off_within_100ms_of_the_deadline() {
    let server = Server::start();
    let api = server.client();
    let (_, a) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "a", "ttl": "1s"}),
        )
        .await;
    let (status, b) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "b", "wait": "10s"}),
        )
        .await;
    assert_eq!(status, 201, "{b}");
    let deadline = a["expires_at"].as_str().unwrap();
    let granted = b["acquired_at"].as_str().unwrap();
    let ms = |t: &str| {
        elock_core::model::Timestamp::parse_rfc3339(t)
            .unwrap()
            .as_millis() as i64
    };
    let late = ms(granted) - ms(deadline);
    assert!(
        (0..100).contains(&late),
        "handed off {late} ms after the deadline"
    );
}

#[tokio::test]
async fn kill_9_and_restart_keeps_every_acknowledged_lease_and_tokens_keep_rising() {
    let server = Server::start();
    let api = server.client();
    let mut leases = Vec::new();
    for i in 0..20 {
        let (status, l) = api
            .post(
                "/api/v1/locks",
                json!({"resource": format!("r{}", i % 10), "owner": format!("o{i}")}),
            )
            .await;
        if i < 10 {
            assert_eq!(status, 201);
            leases.push(l);
        } else {
            assert_eq!(status, 409, "r{} is held", i % 10);
        }
    }
    let (_, released) = api
        .delete(&format!("/api/v1/locks/{}", lease_id(&leases[0])))
        .await;
    assert_eq!(released["state"], "released");
    let dir = server.data_dir.clone();
    let keep = server.kill_9();
    let server = Server::start_in(&dir);
    let api = server.client();
    for l in &leases[1..] {
        let (status, found) = api.get(&format!("/api/v1/locks/{}", lease_id(l))).await;
        assert_eq!(status, 200, "lease {} lost", lease_id(l));
        assert_eq!(found["resources"], l["resources"]);
    }
    assert_eq!(
        api.get(&format!("/api/v1/locks/{}", lease_id(&leases[0])))
            .await
            .0,
        404
    );
    let (_, again) = api
        .post("/api/v1/locks", json!({"resource": "r0", "owner": "after"}))
        .await;
    assert_eq!(
        again["resources"][0]["fencing_token"], 2,
        "tokens continue after a crash"
    );
    drop(keep);
}

#[tokio::test]
async fn a_blocking_wait_whose_client_goes_away_leaves_no_ticket() {
    let server = Server::start();
    let api = server.client();
    api.post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let r = impatient
        .post(format!("{}/api/v1/locks", server.url))
        .json(&json!({"resource": "r", "owner": "b", "wait": "60s"}))
        .send()
        .await;
    assert!(r.is_err(), "the client gave up");
    for _ in 0..100 {
        let (_, info) = api.get("/api/v1/resource?name=r").await;
        if info["queue"].as_array().unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the ticket of the client that went away is still queued");
}

#[tokio::test]
async fn every_error_code_of_the_engine_is_reachable_with_its_status_and_details() {
    let server = Server::start();
    let api = server.client();
    let check = |(status, body): (u16, Value), want_status: u16, code: &str| {
        assert_eq!(status, want_status, "{body}");
        assert_eq!(body["error"]["code"], code, "{body}");
        assert!(body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        body["error"]["details"].clone()
    };
    let d = check(
        api.post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "a", "priority": "urgent"}),
        )
        .await,
        400,
        "invalid_request",
    );
    assert_eq!(d["field"], "priority");
    check(
        api.get("/api/v1/locks/AAAAAAAAAAAAAAAAAAAAAA").await,
        404,
        "not_found",
    );
    let (_, held) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "a", "metadata": {"pr": 42}}),
        )
        .await;
    let d = check(
        api.post("/api/v1/locks", json!({"resource": "r", "owner": "b"}))
            .await,
        409,
        "locked",
    );
    assert_eq!(d["holder"]["id"], held["id"]);
    assert_eq!(d["holder"]["metadata"]["pr"], 42);
    let d = check(
        api.post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "b", "wait": "200ms"}),
        )
        .await,
        409,
        "wait_timeout",
    );
    assert!(d["waited"].is_string());
    api.post("/api/v1/locks", json!({"resource": "s", "owner": "b"}))
        .await;
    let (status, _) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "s", "owner": "a", "wait": "30s", "detach": true}),
        )
        .await;
    assert_eq!(status, 202);
    let d = check(
        api.post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "b", "wait": "30s"}),
        )
        .await,
        409,
        "deadlock",
    );
    assert_eq!(d["cycle"].as_array().unwrap().len(), 2);
    // One holder, then max-queue-size (1,000) waiters; the next one is refused.
    for i in 0..=1000 {
        let (status, _) = api
            .post(
                "/api/v1/locks",
                json!({"resource": "q", "owner": format!("w{i}"), "wait": "1m", "detach": true}),
            )
            .await;
        assert_eq!(status, if i == 0 { 201 } else { 202 });
    }
    let d = check(
        api.post(
            "/api/v1/locks",
            json!({"resource": "q", "owner": "late", "wait": "1m", "detach": true}),
        )
        .await,
        429,
        "queue_full",
    );
    assert_eq!(
        (d["resource"].as_str(), d["max"].as_u64()),
        (Some("q"), Some(1000))
    );
}

#[tokio::test]
async fn the_event_stream_delivers_every_lock_event_in_order_and_resumes() {
    use futures_util::StreamExt;
    let server = Server::start();
    let api = server.client();
    let response = reqwest::get(format!("{}/api/v1/events", server.url))
        .await
        .unwrap();
    let mut stream = response.bytes_stream();
    // Every engine event type: acquired, enqueued, renewed, released, granted, timeout, cancelled,
    // force_released, expired, deadlock.detected.
    let (_, a) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    let (_, t) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "b", "wait": "1m", "detach": true}),
        )
        .await;
    api.post(
        &format!("/api/v1/locks/{}/renew", lease_id(&a)),
        json!({"ttl": "1m"}),
    )
    .await;
    api.delete(&format!("/api/v1/locks/{}", lease_id(&a))).await;
    api.post(
        "/api/v1/locks",
        json!({"resource": "r", "owner": "c", "wait": "100ms"}),
    )
    .await;
    let (_, t2) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "d", "wait": "1m", "detach": true}),
        )
        .await;
    api.delete(&format!("/api/v1/tickets/{}", lease_id(&t2)))
        .await;
    api.post(
        "/api/v1/resource/force-release",
        json!({"name": "r", "reason": "test"}),
    )
    .await;
    api.post(
        "/api/v1/locks",
        json!({"resource": "e", "owner": "x", "ttl": "300ms"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    api.post("/api/v1/locks", json!({"resource": "p1", "owner": "p"}))
        .await;
    api.post("/api/v1/locks", json!({"resource": "p2", "owner": "q"}))
        .await;
    api.post(
        "/api/v1/locks",
        json!({"resource": "p2", "owner": "p", "wait": "1m", "detach": true}),
    )
    .await;
    api.post(
        "/api/v1/locks",
        json!({"resource": "p1", "owner": "q", "wait": "1m"}),
    )
    .await;
    api.post("/api/v1/admin/reload", json!({})).await;
    let want = [
        "lock.acquired",
        "queue.enqueued",
        "lock.renewed",
        "lock.released",
        "queue.granted",
        "queue.enqueued",
        "queue.timeout",
        "queue.enqueued",
        "queue.cancelled",
        "lock.force_released",
        "lock.acquired",
        "lock.expired",
        "lock.acquired",
        "lock.acquired",
        "queue.enqueued",
        "deadlock.detected",
        "config.reloaded",
    ];
    let mut got: Vec<(u64, String)> = Vec::new();
    let mut buffer = String::new();
    while got.len() < want.len() {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let frame: String = buffer.drain(..end + 2).collect();
            let id = frame
                .lines()
                .find_map(|l| l.strip_prefix("id:"))
                .map(|s| s.trim().parse().unwrap());
            let kind = frame
                .lines()
                .find_map(|l| l.strip_prefix("event:"))
                .map(|s| s.trim().to_string());
            if let (Some(id), Some(kind)) = (id, kind) {
                got.push((id, kind));
            }
        }
    }
    let kinds: Vec<&str> = got.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, want);
    assert!(got.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
    assert_eq!(t["owner"], "b");
    // Resume after the fifth event: the rest is replayed from the ring.
    let resumed = reqwest::Client::new()
        .get(format!(
            "{}/api/v1/events?types=lock.expired,deadlock.detected",
            server.url
        ))
        .header("Last-Event-ID", got[4].0.to_string())
        .send()
        .await
        .unwrap();
    let mut stream = resumed.bytes_stream();
    let mut text = String::new();
    while text.matches("event:").count() < 2 {
        let chunk = tokio::time::timeout(Duration::from_secs(10), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(
        text.contains("event: lock.expired") && text.contains("event: deadlock.detected"),
        "{text}"
    );
    assert!(
        !text.contains("event: lock.acquired"),
        "the type filter applies to the replay"
    );
}

#[test]
fn the_cli_prints_leases_and_exits_with_the_documented_codes() {
    let server = Server::start();
    let (code, out) = server.cli(&[
        "lock",
        "proj/a",
        "--owner",
        "acme/infra#1",
        "--metadata",
        "pr=1",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("proj/a") && out.contains("lease "), "{out}");
    let id = out
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("lease ")
        .to_string();
    assert_eq!(
        server.cli(&["lock", "proj/a", "--owner", "acme/infra#2"]).0,
        2,
        "locked"
    );
    assert_eq!(
        server
            .cli(&[
                "lock",
                "proj/a",
                "--owner",
                "acme/infra#2",
                "--wait",
                "200ms"
            ])
            .0,
        2,
        "wait timeout"
    );
    assert_eq!(
        server
            .cli(&["lock", "proj/a", "--owner", "o", "--priority", "urgent"])
            .0,
        1,
        "bad input"
    );
    let (code, out) = server.cli(&["--output", "json", "list"]);
    assert_eq!(code, 0);
    let list: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(list["locks"][0]["metadata"]["pr"], "1");
    assert_eq!(server.cli(&["renew", &id, "--ttl", "10m"]).0, 0);
    assert_eq!(server.cli(&["unlock", &id]).0, 0);
    assert_eq!(server.cli(&["unlock", &id]).0, 1, "already gone");
    assert_eq!(server.cli(&["health-check"]).0, 0);
    assert_eq!(server.cli(&["status"]).0, 0);
    let unreachable = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["--server", "http://127.0.0.1:9", "list"])
        .output()
        .unwrap();
    assert_eq!(unreachable.status.code(), Some(4));
}

#[tokio::test]
async fn every_answer_carries_a_request_id_and_a_given_one_is_kept() {
    let server = Server::start();
    let http = reqwest::Client::new();
    let a = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    let b = http
        .get(format!("{}/healthz", server.url))
        .send()
        .await
        .unwrap();
    let id = |r: &reqwest::Response| {
        r.headers()
            .get("x-request-id")
            .unwrap()
            .to_str()
            .unwrap()
            .to_string()
    };
    assert_ne!(id(&a), id(&b));
    let c = http
        .get(format!("{}/api/v1/locks", server.url))
        .header("x-request-id", "ci-run-7")
        .send()
        .await
        .unwrap();
    assert_eq!(id(&c), "ci-run-7");
}

#[tokio::test]
async fn openapi_3_1_describes_every_endpoint_of_the_contract() {
    let server = Server::start();
    let (status, doc) = server.client().get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let contract = [
        ("post", "/api/v1/locks"),
        ("get", "/api/v1/locks"),
        ("get", "/api/v1/locks/{id}"),
        ("post", "/api/v1/locks/{id}/renew"),
        ("delete", "/api/v1/locks/{id}"),
        ("get", "/api/v1/resource"),
        ("post", "/api/v1/resource/force-release"),
        ("get", "/api/v1/tickets/{id}"),
        ("delete", "/api/v1/tickets/{id}"),
        ("get", "/api/v1/queues"),
        ("get", "/api/v1/deadlocks"),
        ("get", "/api/v1/stats"),
        ("post", "/api/v1/cleanup"),
        ("get", "/api/v1/events"),
        ("get", "/api/v1/audit"),
        ("get", "/metrics"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", "/api/enhanced-locks/health"),
        ("get", "/api/enhanced-locks/metrics"),
        ("get", "/api/enhanced-locks/queue/status"),
        ("post", "/api/v1/admin/reload"),
        ("get", "/api/v1/export"),
        ("post", "/api/v1/import"),
        ("post", "/api/atlantis/v1/try-lock"),
        ("post", "/api/atlantis/v1/unlock"),
        ("post", "/api/atlantis/v1/unlock-if-owned-by-pull"),
        ("post", "/api/atlantis/v1/unlock-by-pull"),
        ("get", "/api/atlantis/v1/locks"),
        ("get", "/api/atlantis/v1/lock"),
        ("get", "/api/atlantis/v1/command-lock"),
        ("post", "/api/atlantis/v1/command-lock/lock"),
        ("post", "/api/atlantis/v1/command-lock/unlock"),
        ("get", "/api/atlantis/v1/migration"),
        ("get", "/api/locks"),
        ("get", "/lock"),
        ("delete", "/locks"),
    ];
    for (method, path) in contract {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is not described"
        );
        for (code, response) in doc["paths"][path][method]["responses"].as_object().unwrap() {
            assert!(
                response["description"].is_string(),
                "{method} {path} {code} needs a description"
            );
        }
    }
    for schema in [
        "Lease",
        "TicketView",
        "ErrorBody",
        "Event",
        "ResourceInfo",
        "Health",
    ] {
        assert!(
            doc["components"]["schemas"][schema].is_object(),
            "schema {schema}"
        );
    }
    // Constraints the server enforces are in the document: ids, names, durations.
    let schemas = &doc["components"]["schemas"];
    assert_eq!(schemas["LeaseId"]["pattern"], "^[A-Za-z0-9_-]{22}$");
    assert_eq!(schemas["ResourceName"]["maxLength"], 1024);
    assert!(
        schemas["DurationText"]["pattern"].is_string(),
        "{}",
        schemas["DurationText"]
    );
    assert_eq!(
        doc["paths"]["/api/v1/audit"]["get"]["responses"]["200"]["content"]["application/json"]
            ["schema"]["$ref"],
        "#/components/schemas/AuditList"
    );
    let codes = &doc["components"]["schemas"]["ErrorCode"]["enum"];
    assert_eq!(
        codes.as_array().unwrap().len(),
        16,
        "every error code: {codes}"
    );
}

#[tokio::test]
async fn sigterm_shuts_down_gracefully_and_state_survives() {
    let server = Server::start();
    let api = server.client();
    let (_, lease) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    // An attached waiter is in flight when the signal comes.
    let waiter = {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "b", "wait": "2s"}),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    support::signal(server.pid(), nix::sys::signal::Signal::SIGTERM);
    let (status, body) = waiter.await.unwrap();
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (503, Some("shutting_down")),
        "the in-flight wait is answered at once, retryable: {body}"
    );
    let dir = server.data_dir.clone();
    let mut server = server;
    let code = server.wait();
    assert_eq!(code, Some(0), "a clean exit");
    // The audit log holds both calls, the one answered during the shutdown included.
    let audit = std::fs::read_to_string(dir.join("audit.jsonl")).unwrap();
    let statuses: Vec<u64> = audit
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(statuses, vec![201, 503], "{audit}");
    let again = Server::start_in(&dir);
    let (status, found) = again
        .client()
        .get(&format!("/api/v1/locks/{}", lease_id(&lease)))
        .await;
    assert_eq!((status, found["owner"].as_str()), (200, Some("a")));
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused() {
    let server = Server::start();
    let big = "x".repeat(300 * 1024);
    let r = reqwest::Client::new()
        .post(format!("{}/api/v1/locks", server.url))
        .header("content-type", "application/json")
        .body(format!(r#"{{"resource": "r", "owner": "{big}"}}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    let (status, _) = server
        .client()
        .post("/api/v1/locks", json!({"resource": "r", "owner": "ok"}))
        .await;
    assert_eq!(status, 201, "the server goes on");
}

/// Lease ids are URL-safe base64, so one in 64 begins with `-`: the CLI takes it as the id, not
/// as an unknown flag (which would exit 2, "not granted", by clap's usage-error code).
#[test]
fn lease_ids_that_begin_with_a_dash_are_ids() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut id = String::new();
    for n in 0..2000 {
        let (status, lease) = rt.block_on(server.client().post(
            "/api/v1/locks",
            serde_json::json!({"resource": format!("r{n}"), "owner": "o"}),
        ));
        assert_eq!(status, 201, "{lease}");
        let this = lease["id"].as_str().unwrap().to_string();
        if this.starts_with('-') {
            id = this;
            break;
        }
    }
    assert!(id.starts_with('-'), "no id began with '-' in 2,000 grants");
    assert_eq!(server.cli(&["renew", &id, "--ttl", "10m"]).0, 0);
    assert_eq!(server.cli(&["unlock", &id]).0, 0);
    assert_eq!(server.cli(&["unlock", &id]).0, 1, "already gone");
}

/// `elock unlock` given something that is not a lease id (a resource name, say) says what an id
/// looks like, instead of passing the server's bare 404 on; an unknown flag is a usage error.
#[test]
fn the_cli_says_what_a_lease_id_looks_like() {
    let server = Server::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["unlock", "acme/infra/envs/prod/default/"])
        .env("ELOCK_SERVER", &server.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a lease id"), "{stderr}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["list", "--no-such-flag"])
        .env("ELOCK_SERVER", &server.url)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}
