//! The server's life as an operator sees it: a SIGTERM ends event streams and waits at once
//! (waiting callers hear a retryable `503 shutting_down`) and the process exits within 5 s
//! whatever its clients do; event ids go on increasing across restarts, and a client resuming
//! with an id of the earlier run is told what it missed.

mod support;

use std::time::{Duration, Instant};

use elock_redis::testing::{unique_prefix, RedisServer};
use serde_json::{json, Value};
use support::Server;

#[tokio::test]
async fn sigterm_ends_streams_and_waits_and_exits_within_five_seconds() {
    let mut server = Server::start();
    let api = server.client();
    let (status, _) = api
        .post(
            "/api/v1/locks",
            json!({"resource": "r", "owner": "holder", "ttl": "5m"}),
        )
        .await;
    assert_eq!(status, 201);
    // An open event stream (the CLI's, which would reconnect) and a waiter with a long wait.
    let events = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["events"])
        .env("ELOCK_SERVER", &server.url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let waiter_api = server.client();
    let waiter = tokio::spawn(async move {
        waiter_api
            .post(
                "/api/v1/locks",
                json!({"resource": "r", "owner": "waiter", "wait": "40s"}),
            )
            .await
    });
    for _ in 0..100 {
        let (_, q) = api.get("/api/v1/resource?name=r").await;
        if q["queue"].as_array().is_some_and(|q| q.len() == 1) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let started = Instant::now();
    support::signal(server.pid(), nix::sys::signal::Signal::SIGTERM);
    let (status, body) = waiter.await.unwrap();
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "shutting_down", "{body}");
    let code = tokio::task::spawn_blocking(move || server.wait())
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(code, Some(0), "a clean exit");
    assert!(took < Duration::from_secs(5), "exited after {took:?}");
    let mut events = events;
    let _ = events.kill();
    let _ = events.wait();
}

/// The ids of events published after a restart are above every id of the run before; a stream
/// resuming with an old id gets a `gap` first.
async fn ids_increase_across_a_restart(start: impl Fn() -> Server) {
    let take = |server: &Server| {
        let (code, _) = server.cli(&["lock", "r", "--owner", "o", "--ttl", "1m"]);
        assert_eq!(code, 0);
    };
    let server = start();
    take(&server);
    let (_, out) = events_since(&server, 0).await;
    let before = out.iter().filter_map(|e| e["id"].as_u64()).max().unwrap();
    drop(server);
    let server = start();
    let (code, _) = server.cli(&["force-unlock", "r"]);
    assert_eq!(code, 0);
    take(&server);
    let (gap, out) = events_since(&server, before).await;
    assert!(gap, "resuming with an id of the earlier run is a gap");
    let after = out.iter().filter_map(|e| e["id"].as_u64()).min().unwrap();
    assert!(after > before, "{after} after {before}");
}

/// The events the stream sends to a client that last saw `last`, read for half a second, and
/// whether a `gap` came first.
async fn events_since(server: &Server, last: u64) -> (bool, Vec<Value>) {
    let mut resp = reqwest::Client::new()
        .get(format!("{}/api/v1/events", server.url))
        .header("Last-Event-ID", last.to_string())
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    let until = Instant::now() + Duration::from_millis(500);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout(
        until.saturating_duration_since(Instant::now()),
        resp.chunk(),
    )
    .await
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let gap = text.contains("event: gap");
    let events = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
        .filter(|v| v.get("type").is_some())
        .collect();
    (gap, events)
}

#[tokio::test]
async fn event_ids_increase_across_restarts_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    ids_increase_across_a_restart(|| Server::start_in(&path)).await;
}

#[tokio::test]
async fn event_ids_increase_across_restarts_on_redis() {
    let redis = RedisServer::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        format!(
            "enhanced-locking:\n  backend: redis\nredis:\n  addresses: [\"{}\"]\n  key-prefix: \"{}\"\n",
            redis.address(),
            unique_prefix()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap().to_string();
    let data = dir.path().join("data");
    ids_increase_across_a_restart(|| Server::start_with(&data, &["--config", &c])).await;
}

/// `elock events` lives through a server restart: it reconnects with `Last-Event-ID`, says that
/// events may have been missed, and goes on printing the new server's events.
#[tokio::test]
async fn elock_events_reconnects_across_a_restart_and_says_what_it_missed() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", support::free_port());
    let serve = || {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
            .args(["serve", "--listen", &addr, "--data-dir"])
            .arg(dir.path())
            .env("ELOCK_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return child;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the server did not listen on {addr}");
    };
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
            .args(args)
            .env("ELOCK_SERVER", &addr)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let mut server = serve();
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let err_file = tempfile::NamedTempFile::new().unwrap();
    let mut events = std::process::Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["events", "--types", "lock.acquired"])
        .env("ELOCK_SERVER", &addr)
        .stdout(out_file.reopen().unwrap())
        .stderr(err_file.reopen().unwrap())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    cli(&["lock", "before", "--owner", "o"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.kill().unwrap();
    server.wait().unwrap();
    let mut server = serve();
    cli(&["lock", "after", "--owner", "o"]);
    let printed = |f: &tempfile::NamedTempFile| std::fs::read_to_string(f.path()).unwrap();
    let started = Instant::now();
    while !printed(&out_file).contains("after") {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no event after the restart: {}{}",
            printed(&out_file),
            printed(&err_file)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        events.try_wait().unwrap().is_none(),
        "elock events is still running"
    );
    let (out, err) = (printed(&out_file), printed(&err_file));
    assert!(out.contains("before") && out.contains("after"), "{out}");
    assert!(
        err.contains("elock events:"),
        "a notice of what may be missed: {err}"
    );
    let _ = events.kill();
    let _ = events.wait();
    let _ = server.kill();
    let _ = server.wait();
}
