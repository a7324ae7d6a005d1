//! Black-box test of webhooks: signed deliveries, retried after a failure, and a hanging
//! receiver that does not slow the lock path.

mod support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::Server;

#[derive(Default)]
struct Received {
    attempts: usize,
    delivered: Vec<(Value, String)>,
}

async fn hook(
    State(seen): State<Arc<Mutex<Received>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let mut seen = seen.lock().unwrap();
    seen.attempts += 1;
    if seen.attempts == 1 {
        return StatusCode::INTERNAL_SERVER_ERROR; // the first delivery fails: it must be retried
    }
    let sig = headers
        .get("x-elock-signature")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let mut mac = Hmac::<Sha256>::new_from_slice(b"hook-secret").unwrap();
    mac.update(&body);
    assert_eq!(
        sig,
        format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
        "signature"
    );
    seen.delivered
        .push((serde_json::from_slice(&body).unwrap(), sig));
    StatusCode::NO_CONTENT
}

async fn hang() -> StatusCode {
    tokio::time::sleep(Duration::from_secs(30)).await;
    StatusCode::OK
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_delivered_signed_retried_and_never_slow_the_lock_path() {
    let seen: Arc<Mutex<Received>> = Arc::default();
    let receiver = Router::new()
        .route("/hook", post(hook))
        .route("/hang", post(hang))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, receiver).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "events:\n  webhooks:\n    - {{url: 'http://{addr}/hook', types: [lock.acquired, lock.released], secret-env: ELOCK_TEST_HOOK_SECRET}}\n    - {{url: 'http://{addr}/hang'}}\n"
        ),
    )
    .unwrap();
    let server = Server::start_with_env(
        &dir.path().join("data"),
        &["--config", config.to_str().unwrap()],
        &[("ELOCK_TEST_HOOK_SECRET", "hook-secret")],
    );
    let api = server.client();
    let started = Instant::now();
    let (_, a) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
        .await;
    api.delete(&format!("/api/v1/locks/{}", a["id"].as_str().unwrap()))
        .await;
    for i in 0..20 {
        let (_, l) = api
            .post(
                "/api/v1/locks",
                json!({"resource": format!("x{i}"), "owner": "b"}),
            )
            .await;
        api.delete(&format!("/api/v1/locks/{}", l["id"].as_str().unwrap()))
            .await;
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "a hanging webhook must not slow the lock path"
    );
    for _ in 0..200 {
        if seen.lock().unwrap().delivered.len() >= 42 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let seen = seen.lock().unwrap();
    assert_eq!(
        seen.delivered.len(),
        42,
        "every acquired and released event, once"
    );
    assert_eq!(seen.attempts, 43, "the first delivery was retried");
    let kinds: Vec<&str> = seen
        .delivered
        .iter()
        .map(|(e, _)| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(&kinds[..2], ["lock.acquired", "lock.released"]);
    assert_eq!(seen.delivered[0].0["lease_id"], a["id"]);
    let ids: Vec<u64> = seen
        .delivered
        .iter()
        .map(|(e, _)| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "in order");
}
