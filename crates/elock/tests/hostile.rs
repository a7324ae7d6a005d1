//! What a hostile or broken client can send, against the real binary: imports that would poison
//! the store, malformed requests that must each get the one JSON error shape with its code, and
//! slow clients that must not take the server's connections from everyone else.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::Server;

fn export_with(lease: Value) -> Value {
    json!({
        "format": "elock-export/1",
        "exported_at": "2026-01-01T00:00:00Z",
        "leases": [lease],
        "tickets": [],
        "fences": [],
    })
}

fn lease(resources: Value, acquired_at: &str, ttl: &str, expires_at: &str) -> Value {
    json!({
        "id": "AAAAAAAAAAAAAAAAAAAAAQ",
        "owner": "mallory",
        "resources": resources,
        "priority": "normal",
        "acquired_at": acquired_at,
        "expires_at": expires_at,
        "ttl": ttl,
        "state": "held",
    })
}

/// Each import a request could not have made is refused whole with the record's index and
/// field; the server then still restarts on its data directory (nothing was written).
#[tokio::test]
async fn poisoned_imports_are_refused_and_the_store_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path());
    let api = server.client();
    let now = chrono_like_now();
    let cases = [
        (
            lease(
                json!([{"resource": "r", "fencing_token": 1}, {"resource": "r", "fencing_token": 2}]),
                &now,
                "10m",
                &now,
            ),
            "leases[0].resources[1]",
        ),
        (
            lease(
                json!([{"resource": "r", "fencing_token": 1}]),
                "9999-12-31T23:00:00Z",
                "10m",
                "9999-12-31T23:10:00Z",
            ),
            "leases[0].acquired_at",
        ),
        (
            lease(
                json!([{"resource": "r", "fencing_token": 1}]),
                &now,
                "100000000h",
                &now,
            ),
            "leases[0].ttl",
        ),
        (
            lease(
                json!([{"resource": "r", "fencing_token": u64::MAX}]),
                &now,
                "10m",
                &now,
            ),
            "leases[0].resources[0].fencing_token",
        ),
    ];
    for (lease, field) in cases {
        let (status, body) = api.post("/api/v1/import", export_with(lease)).await;
        assert_eq!(status, 400, "{field}: {body}");
        assert_eq!(body["error"]["code"], "invalid_request", "{body}");
        assert_eq!(body["error"]["details"]["field"], field, "{body}");
    }
    let mut counter = export_with(json!(null));
    counter["leases"] = json!([]);
    counter["fences"] = json!([["r", u64::MAX]]);
    let (status, body) = api.post("/api/v1/import", counter).await;
    assert_eq!(
        (status, body["error"]["details"]["field"].as_str()),
        (400, Some("fences[0]")),
        "{body}"
    );
    drop(api);
    server.kill_9();
    let server = Server::start_in(dir.path());
    let (status, body) = server
        .client()
        .post("/api/v1/locks", json!({"resource": "r", "owner": "o"}))
        .await;
    assert_eq!(status, 201, "the store reopens and grants: {body}");
    assert_eq!(body["resources"][0]["fencing_token"], 1);
}

/// Now as RFC 3339, from the server's own clock source (the system clock).
fn chrono_like_now() -> String {
    elock_core::model::Timestamp::from_system(std::time::SystemTime::now()).to_string()
}

/// Every refusal, whatever layer makes it, is the one JSON shape with a code.
#[tokio::test]
async fn every_error_answer_is_json_with_a_code() {
    let server = Server::start();
    let api = server.client();
    let raw = |method: &str, target: &str, body: &[u8], ctype: &str| {
        raw_request(&server.url, method, target, body, ctype, body.len())
    };
    let long = format!("/api/v1/resource?name={}", "a".repeat(20_000));
    // Announced, not sent: the refusal comes from the content-length alone (sending the bytes
    // would race the server's close and could turn the answer into a reset).
    let big = raw_request(
        &server.url,
        "POST",
        "/api/v1/locks",
        b"",
        "application/json",
        300 * 1024,
    );
    let cases: Vec<(u16, &str, (u16, Value))> = vec![
        (
            400,
            "invalid_request",
            api.post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "o", "ttl": "1ns"}),
            )
            .await,
        ),
        (
            400,
            "invalid_request",
            api.post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "o", "ttl": "999us"}),
            )
            .await,
        ),
        (
            400,
            "invalid_request",
            raw(
                "POST",
                "/api/v1/locks",
                br#"{"resource":"r","owner":"o"} trailing"#,
                "application/json",
            ),
        ),
        (
            400,
            "invalid_request",
            api.get("/api/v1/resource?name=%FF").await,
        ),
        (
            400,
            "invalid_request",
            api.get("/api/v1/resource?name=a&name=b").await,
        ),
        (
            400,
            "invalid_request",
            api.get("/api/v1/export?include-secrets=maybe").await,
        ),
        (
            400,
            "invalid_request",
            raw("GET", "/api/v1/locks/%FF%FE", b"", ""),
        ),
        (404, "not_found", api.get("/api/v1/no-such-thing").await),
        (
            405,
            "method_not_allowed",
            api.send(reqwest::Method::PUT, "/api/v1/locks", None).await,
        ),
        (413, "request_too_large", big),
        (414, "uri_too_long", api.get(&long).await),
    ];
    for (i, (status, code, (got_status, body))) in cases.into_iter().enumerate() {
        assert_eq!(
            (got_status, body["error"]["code"].as_str()),
            (status, Some(code)),
            "case {i}: {body}"
        );
        assert!(
            body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}: {body}"
        );
    }
    // The refused ttls name the field.
    let (_, body) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "o", "ttl": "999us"}),
        )
        .await;
    assert_eq!(body["error"]["details"]["field"], "ttl", "{body}");
}

/// One raw HTTP/1.1 request on its own connection; the status and the body as JSON (or text).
fn raw_request(
    url: &str,
    method: &str,
    target: &str,
    body: &[u8],
    ctype: &str,
    content_length: usize,
) -> (u16, Value) {
    let addr = url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {content_length}\r\n"
    );
    if !ctype.is_empty() {
        head.push_str(&format!("content-type: {ctype}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).unwrap();
    let _ = s.write_all(body);
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    parse_answer(&answer)
}

fn parse_answer(answer: &[u8]) -> (u16, Value) {
    let text = String::from_utf8_lossy(answer);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // A chunked answer: the JSON is the line that starts with '{'.
    let json = body
        .lines()
        .find(|l| l.starts_with('{'))
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or(Value::String(body.to_string()));
    (status, json)
}

/// A flood of clients sending a byte a second: the ones over the limit are refused at once with
/// 503 `overloaded`, the slow ones are cut off at the header / body deadline, and the server
/// answers everyone else throughout.
#[tokio::test]
async fn slow_clients_are_cut_off_and_others_are_served() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "http:\n  header-read-timeout: 1s\n  body-read-timeout: 1s\n  max-connections: 40\n",
    )
    .unwrap();
    let server = Server::start_with(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
    );
    let addr = server.url.trim_start_matches("http://").to_string();

    // One that sends its headers and then trickles its body.
    let mut trickle = TcpStream::connect(&addr).unwrap();
    trickle
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    trickle
        .write_all(b"POST /api/v1/locks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{")
        .unwrap();

    // 60 connections that never finish their headers.
    let mut slow: Vec<TcpStream> = (0..60)
        .map(|_| {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let _ = s.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ");
            s
        })
        .collect();

    let start = Instant::now();
    let mut refused = 0;
    let mut cut = 0;
    for s in slow.iter_mut() {
        let mut answer = Vec::new();
        let _ = s.write_all(b"x");
        let _ = s.read_to_end(&mut answer);
        let (status, body) = parse_answer(&answer);
        match status {
            503 => {
                assert_eq!(body["error"]["code"], "overloaded", "{body}");
                refused += 1;
            }
            // Cut off at the header deadline: closed (hyper may answer 408 first).
            0 | 408 => cut += 1,
            other => panic!("a slow client got {other}: {body}"),
        }
    }
    // 40 slots, one taken by the trickling client: at least 20 of the 60 are refused at once
    // (fewer if the server frees slots before it gets to them), the rest cut at the deadline.
    assert!(refused >= 1 && cut >= 39, "{refused} refused, {cut} cut");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "slow clients are cut off at the deadline, not when they give up: {:?}",
        start.elapsed()
    );
    let mut answer = Vec::new();
    let _ = trickle.read_to_end(&mut answer);
    let (status, body) = parse_answer(&answer);
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (408, Some("request_timeout")),
        "{body}"
    );

    // Everyone else is served.
    let api = server.client();
    let (status, body) = api.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "o"}))
        .await;
    assert_eq!(status, 201, "{body}");
}

/// A waiter connected to the server dies with it (kill -9): after the restart its ticket is not
/// granted to anyone; a detached ticket survives and is granted in its turn.
#[tokio::test]
async fn connected_waiters_are_not_granted_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_in(dir.path());
    let api = server.client();
    let (status, holder) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "holder", "ttl": "2s"}),
        )
        .await;
    assert_eq!(status, 201, "{holder}");
    // Attached: its HTTP request stays open, waiting.
    let waiting = {
        let api = api.clone();
        tokio::spawn(async move {
            api.post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "gone", "wait": "5m"}),
            )
            .await
        })
    };
    let (status, detached) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "patient", "wait": "5m", "detach": true}),
        )
        .await;
    assert_eq!(status, 202, "{detached}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while api.get("/api/v1/resource?name=r").await.1["queue"]
        .as_array()
        .map_or(0, |q| q.len())
        < 2
    {
        assert!(Instant::now() < deadline, "both waiters queue");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(api);
    server.kill_9();
    waiting.abort();

    let server = Server::start_in(dir.path());
    let api = server.client();
    let (_, info) = api.get("/api/v1/resource?name=r").await;
    let queue: Vec<&str> = info["queue"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["owner"].as_str().unwrap())
        .collect();
    assert_eq!(queue, vec!["patient"], "{info}");
    // The holder's 2s run out: the detached waiter gets it, not the client that is gone.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let holder = api.holder("r").await;
        if !holder.is_null() && holder["owner"] != "holder" {
            assert_eq!(holder["owner"], "patient", "{holder}");
            break;
        }
        assert!(Instant::now() < deadline, "nobody was granted r");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
