//! The CLI as a person or a script meets it: pipes that close early, unlocking by resource,
//! owner or pull, tickets, progress on a terminal, completions and the manual page, and the
//! configuration's every problem at once.

mod support;

use std::process::{Command, Stdio};

use serde_json::{json, Value};
use support::Server;

fn elock(server: &Server, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(args)
        .env("ELOCK_SERVER", &server.url)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_reader_that_goes_away_is_no_panic() {
    let server = Server::start();
    let api = server.client();
    // More output than a pipe holds, so that the writer meets the closed pipe.
    let mut calls = Vec::new();
    for i in 0..400 {
        let api = api.clone();
        calls.push(tokio::spawn(async move {
            api.post(
                "/api/v1/locks",
                json!({"resource": format!("pipe/{i}"), "owner": "o"}),
            )
            .await
        }));
    }
    for c in calls {
        assert_eq!(c.await.unwrap().0, 201);
    }
    let out = Command::new("bash")
        .args([
            "-c",
            &format!(
                "{} --output json list | head -c 10 >/dev/null; echo \"status ${{PIPESTATUS[0]}}\"",
                env!("CARGO_BIN_EXE_elock")
            ),
        ])
        .env("ELOCK_SERVER", &server.url)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("status 0"), "{stdout} {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[tokio::test]
async fn unlock_by_resource_owner_or_pull() {
    let server = Server::start();
    let take = |r: &str, owner: &str| {
        let (code, out, err) = elock(&server, &["lock", r, "--owner", owner]);
        assert_eq!(code, 0, "{out}{err}");
    };
    take("a", "x");
    take("b", "acme/infra#42");
    take("c", "acme/infra#42");
    take("d", "ci-job");
    let (code, out, _) = elock(&server, &["unlock", "--resource", "a"]);
    assert_eq!(code, 0);
    assert!(out.contains("released") && out.contains("x: a"), "{out}");
    let (code, out, _) = elock(
        &server,
        &["--output", "json", "unlock", "--pull", "acme/infra#42"],
    );
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["locks"].as_array().unwrap().len(), 2, "{v}");
    let (code, out, _) = elock(&server, &["unlock", "--owner", "ci-job"]);
    assert_eq!(code, 0);
    assert!(out.contains("ci-job: d"), "{out}");
    let (_, out, _) = elock(&server, &["--output", "json", "list"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["locks"],
        json!([])
    );
    // Not a lease id, not a pull: said so, exit 1; nothing named: a usage error.
    let (code, _, err) = elock(&server, &["unlock", "acme/infra/envs/prod"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a lease id"), "{err}");
    let (code, _, err) = elock(&server, &["unlock", "--pull", "infra-42"]);
    assert_eq!(code, 1);
    assert!(err.contains("expected OWNER/REPO#N"), "{err}");
    let (code, _, _) = elock(&server, &["unlock"]);
    assert_eq!(code, 64);
}

#[tokio::test]
async fn a_detached_ticket_keeps_the_wait_and_can_be_shown_and_cancelled() {
    let server = Server::start();
    let (code, _, _) = elock(&server, &["lock", "r", "--owner", "a"]);
    assert_eq!(code, 0);
    let (code, out, err) = elock(
        &server,
        &[
            "--output", "json", "lock", "r", "--owner", "b", "--detach", "--wait", "90s",
        ],
    );
    assert_eq!(code, 0, "{out}{err}");
    let t: Value = serde_json::from_str(&out).unwrap();
    let id = t["id"].as_str().unwrap().to_string();
    let at = |v: &Value| {
        elock_core::model::Timestamp::parse_rfc3339(v.as_str().unwrap())
            .unwrap()
            .as_millis()
    };
    let stays = at(&t["deadline"]) - at(&t["enqueued_at"]);
    // (The deadline is set from the manager's clock, the enqueue time by the store's, a
    // moment later.)
    assert!(
        (89_000..=90_000).contains(&stays),
        "the wait is the ticket's deadline: {t}"
    );
    let (code, out, _) = elock(&server, &["ticket", "show", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("POSITION") && out.contains(" 1 "), "{out}");
    let (code, out, _) = elock(&server, &["ticket", "cancel", &id]);
    assert_eq!(code, 0);
    assert!(out.contains("cancelled ticket"), "{out}");
    let (code, _, err) = elock(&server, &["ticket", "show", &id]);
    assert_eq!(code, 1, "{err}");
}

#[tokio::test]
async fn a_wait_on_a_terminal_shows_its_place() {
    let server = Server::start();
    let (code, _, _) = elock(&server, &["lock", "r", "--owner", "a", "--ttl", "3s"]);
    assert_eq!(code, 0);
    // `script` gives the command a terminal.
    let cmd = format!(
        "{} lock r --owner b --wait 10s",
        env!("CARGO_BIN_EXE_elock")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .env("ELOCK_SERVER", &server.url)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("waiting for r: held by a since") && text.contains("position 1 of 1"),
        "{text}"
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_same_definitions() {
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_elock"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert!(run(&["completions", "bash"]).contains("force-unlock"));
    assert!(run(&["completions", "zsh"]).contains("#compdef elock"));
    assert!(run(&["completions", "fish"]).contains("complete -c elock"));
    let man = run(&["man"]);
    assert!(
        man.contains(".TH elock 1") && man.contains("Exit codes"),
        "{}",
        &man[..200]
    );
    let dir = tempfile::tempdir().unwrap();
    run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(dir.path().join("elock-unlock.1").exists());
    assert!(run(&["--help"]).contains("64  usage error"));
    // `serve --help` shows what the server reads, not the client's options.
    let serve = run(&["serve", "--help"]);
    assert!(
        serve.contains("--data-dir") && serve.contains("--listen"),
        "{serve}"
    );
    for client in ["--server", "--token", "--output"] {
        assert!(
            !serve.contains(client),
            "{client} in serve --help:\n{serve}"
        );
    }
}

#[test]
fn configuration_problems_of_every_source_are_reported_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("elock.yaml");
    std::fs::write(
        &file,
        "priority-queue:\n  max-queue-size: lots\nhttp:\n  max-connections: 0\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["config", "validate", file.to_str().unwrap()])
        .env("ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZ", "5")
        .env("ATLANTIS_ENHANCED_LOCKING_REDIS_DB", "x")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for what in [
        "priority-queue.max-queue-size = \"lots\": invalid type: string \"lots\", expected a whole number",
        ", line 2)",
        "http.max-connections = 0",
        "ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZ",
        "did you mean ATLANTIS_ENHANCED_LOCKING_MAX_QUEUE_SIZE",
        "redis.db = \"x\"",
        "(from ATLANTIS_ENHANCED_LOCKING_REDIS_DB)",
    ] {
        assert!(err.contains(what), "{what} missing in:\n{err}");
    }
    // The effective configuration as JSON for scripts.
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args([
            "--output",
            "json",
            "config",
            "show",
            "--listen",
            "127.0.0.1:9",
        ])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["enhanced-locking"]["listen"], "127.0.0.1:9");
}

#[test]
fn a_second_server_on_a_busy_data_directory_says_another_server_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Server::start_in(dir.path());
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("elock.lock is locked by another process")
            && err.contains("another elock server is probably running"),
        "{err}"
    );
    assert!(!err.contains("move it away"), "{err}");
}

/// `--server` / `ELOCK_SERVER` take `host:port` (http assumed); a URL that cannot be one is said
/// so, naming the setting, with exit 1 (an error), not 4 (unreachable).
#[test]
fn the_server_address_takes_host_port_and_a_bad_one_is_named() {
    let server = Server::start();
    let host_port = server.url.trim_start_matches("http://").to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["list"])
        .env("ELOCK_SERVER", &host_port)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["list"])
        .env("ELOCK_SERVER", "http://[bad")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--server / ELOCK_SERVER") && err.contains("[bad"),
        "{err}"
    );
}

/// Logs written to a file (not a terminal) are plain text: no colour codes.
#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("elock.log");
    let server = Server::start_logging(&dir.path().join("data"), &log, "info");
    server
        .client()
        .post("/api/v1/locks", json!({"resource": "r", "owner": "o"}))
        .await;
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("elock serving"), "{text}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
}
