//! Black-box tests of the server's configuration: refused at start when wrong, reloaded live.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::json;
use support::Server;

#[test]
fn a_configuration_file_with_a_misspelt_key_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(&config, "priority-queue:\n  max-queue-sise: 5\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("priority-queue.max-queue-sise"), "{err}");
    assert!(
        err.contains("max-queue-size"),
        "the expectation lists the right key: {err}"
    );
    assert!(err.contains("elock.yaml"), "{err}");
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env("ATLANTIS_ENHANCED_LOCKING_MAX_PRIORITY_BOOST", "7")
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("max-priority-boost")
            && err.contains("ATLANTIS_ENHANCED_LOCKING_MAX_PRIORITY_BOOST"),
        "{err}"
    );
}

#[tokio::test]
async fn reload_applies_live_settings_through_the_endpoint_and_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(&config, "priority-queue:\n  max-queue-size: 3\n").unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let api = server.client();
    api.post("/api/v1/locks", json!({"resource": "r", "owner": "holder"}))
        .await;
    let queue =
        |i: usize| json!({"resource": "r", "owner": format!("w{i}"), "wait": "1m", "detach": true});
    assert_eq!(api.post("/api/v1/locks", queue(1)).await.0, 202);
    assert_eq!(api.post("/api/v1/locks", queue(2)).await.0, 202);

    std::fs::write(&config, "priority-queue:\n  max-queue-size: 2\n").unwrap();
    let (status, answer) = api.post("/api/v1/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        api.post("/api/v1/locks", queue(3)).await.0,
        429,
        "the new limit applies at once"
    );

    std::fs::write(&config, "priority-queue:\n  max-queue-size: 5\n").unwrap();
    support::signal(server.pid(), nix::sys::signal::Signal::SIGHUP);
    let mut accepted = false;
    for _ in 0..100 {
        if api.post("/api/v1/locks", queue(4)).await.0 == 202 {
            accepted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(accepted, "SIGHUP reloaded the larger limit");

    // Migration and Atlantis-interop settings are read at start: a reload names them.
    std::fs::write(
        &config,
        "priority-queue:\n  max-queue-size: 5\nmigration:\n  mode: enhanced\nbackward-compatibility:\n  legacy-poll-interval: 5s\n",
    )
    .unwrap();
    let (status, answer) = api.post("/api/v1/admin/reload", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let restart = answer["restart_required"].to_string();
    assert!(
        restart.contains("\"migration\"") && restart.contains("\"backward-compatibility\""),
        "{answer}"
    );

    std::fs::write(&config, "priority-queue:\n  max-queue-size: lots\n").unwrap();
    let (status, answer) = api.post("/api/v1/admin/reload", json!({})).await;
    assert_eq!(status, 400);
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max-queue-size"),
        "{answer}"
    );
}

#[tokio::test]
async fn metrics_and_audit_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "metrics:\n  enabled: false\naudit:\n  enabled: false\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let api = server.client();
    assert_eq!(
        api.post("/api/v1/locks", json!({"resource": "r", "owner": "a"}))
            .await
            .0,
        201
    );
    assert_eq!(api.get("/metrics").await.0, 404);
    let (status, audit) = api.get("/api/v1/audit").await;
    assert_eq!((status, audit["enabled"].as_bool()), (200, Some(false)));
    assert!(
        !data.join("audit.jsonl").exists(),
        "no audit file is written"
    );
}
