//! Black-box tests of `elock run`: renewal, exit code, release, lease loss and interruption.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::Server;

fn run_cmd(server: &Server, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_elock"));
    c.arg("run").args(args).env("ELOCK_SERVER", &server.url);
    c
}

/// Ctrl-C to `elock run`; its exit code.
async fn interrupt(mut child: std::process::Child) -> Option<i32> {
    support::signal(child.id(), nix::sys::signal::Signal::SIGINT);
    tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap()
        .code()
}

/// Waits (bounded) until someone holds `resource`.
async fn held(api: &support::Api, resource: &str) {
    for _ in 0..100 {
        if !api.holder(resource).await.is_null() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{resource} was never taken");
}

#[tokio::test]
async fn the_lock_is_held_and_renewed_while_the_command_runs_and_its_exit_code_is_passed_on() {
    let server = Server::start();
    let api = server.client();
    let child = run_cmd(
        &server,
        &[
            "deploy/prod",
            "--owner",
            "ci-1",
            "--ttl",
            "1s",
            "--",
            "sh",
            "-c",
            "echo \"$ELOCK_LEASE_ID $ELOCK_FENCING_TOKEN\"; sleep 2.5; exit 7",
        ],
    )
    .stdout(Stdio::piped())
    .spawn()
    .unwrap();
    tokio::time::sleep(Duration::from_millis(1800)).await;
    let holder = api.holder("deploy/prod").await;
    assert_eq!(
        holder["owner"], "ci-1",
        "still held after more than its ttl: renewed"
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(7));
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains(&format!("{} 1", holder["id"].as_str().unwrap())),
        "{printed}"
    );
    assert!(
        api.holder("deploy/prod").await.is_null(),
        "released when the command ended"
    );
}

#[tokio::test]
async fn a_lost_lease_stops_the_command() {
    let server = Server::start();
    let api = server.client();
    let mut child = run_cmd(
        &server,
        &[
            "r", "--owner", "ci-2", "--ttl", "900ms", "--", "sleep", "30",
        ],
    )
    .spawn()
    .unwrap();
    held(&api, "r").await;
    let started = Instant::now();
    let (status, _) = api
        .post(
            "/api/v1/resource/force-release",
            json!({"name": "r", "reason": "test"}),
        )
        .await;
    assert_eq!(status, 200);
    let code = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(code.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped at the next renewal, not after 30s"
    );
}

#[tokio::test]
async fn ctrl_c_stops_the_command_and_releases_the_lock() {
    let server = Server::start();
    let api = server.client();
    let child = run_cmd(&server, &["r", "--owner", "ci-3", "--", "sleep", "30"])
        .spawn()
        .unwrap();
    held(&api, "r").await;
    assert_eq!(interrupt(child).await, Some(130));
    assert!(api.holder("r").await.is_null(), "released on Ctrl-C");
}

#[test]
fn a_lock_that_cannot_be_had_runs_nothing_and_exits_2() {
    let server = Server::start();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(
        server
            .client()
            .post("/api/v1/locks", json!({"resource": "r", "owner": "other"})),
    );
    let out = run_cmd(
        &server,
        &["r", "--", "touch", "/tmp/elock-run-should-not-exist"],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(!std::path::Path::new("/tmp/elock-run-should-not-exist").exists());
}

/// Ctrl-C while still waiting in the queue: the command never runs, the ticket leaves the queue,
/// and nothing is granted to the interrupted run later.
#[tokio::test]
async fn ctrl_c_while_waiting_leaves_the_queue_and_runs_nothing() {
    let server = Server::start();
    let api = server.client();
    let (status, holder) = api
        .post("/api/v1/locks", json!({"resource": "r", "owner": "other"}))
        .await;
    assert_eq!(status, 201, "{holder}");
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let child = run_cmd(
        &server,
        &[
            "r",
            "--owner",
            "ci-4",
            "--wait",
            "30s",
            "--",
            "touch",
            marker.to_str().unwrap(),
        ],
    )
    .spawn()
    .unwrap();
    for _ in 0..100 {
        if api.get("/api/v1/resource?name=r").await.1["queue"]
            .as_array()
            .is_some_and(|q| !q.is_empty())
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(interrupt(child).await, Some(130));
    let mut queue_len = usize::MAX;
    for _ in 0..100 {
        queue_len = api.get("/api/v1/resource?name=r").await.1["queue"]
            .as_array()
            .map_or(0, |q| q.len());
        if queue_len == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(queue_len, 0, "the interrupted wait left the queue");
    let (status, _) = api
        .delete(&format!("/api/v1/locks/{}", holder["id"].as_str().unwrap()))
        .await;
    assert_eq!(status, 200);
    assert!(
        api.holder("r").await.is_null(),
        "nothing granted to the interrupted run"
    );
    assert!(!marker.exists(), "the command never ran");
}

/// Two `run`s under the same `--owner` (what an Atlantis step passes: `$REPO#$PULL`) exclude
/// each other: neither is granted by re-entry. 50 rounds; each child writes when it starts and
/// ends (its own clock readings), and no two intervals overlap.
#[tokio::test]
async fn two_runs_with_the_same_owner_never_overlap() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("intervals");
    let script = format!(
        "echo \"start $(date +%s%N)\" >> {log}; sleep 0.05; echo \"end $(date +%s%N)\" >> {log}",
        log = log.display()
    );
    for _ in 0..50 {
        let children: Vec<_> = (0..2)
            .map(|_| {
                run_cmd(
                    &server,
                    &[
                        "atlantis/project",
                        "--owner",
                        "acme/infra#42",
                        "--wait",
                        "30s",
                        "--",
                        "sh",
                        "-c",
                        &script,
                    ],
                )
                .spawn()
                .unwrap()
            })
            .collect();
        for mut c in children {
            let status = tokio::task::spawn_blocking(move || c.wait().unwrap())
                .await
                .unwrap();
            assert_eq!(status.code(), Some(0));
        }
    }
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<(&str, u128)> = text
        .lines()
        .map(|l| {
            let (what, at) = l.split_once(' ').unwrap();
            (what, at.parse().unwrap())
        })
        .collect();
    assert_eq!(lines.len(), 200, "every run ran");
    // Written in order by the holders one at a time: start, end, start, end, ...
    for (i, pair) in lines.chunks(2).enumerate() {
        assert_eq!(
            (pair[0].0, pair[1].0),
            ("start", "end"),
            "run {i} overlapped another: {:?}",
            &lines[i * 2..]
        );
        assert!(pair[0].1 <= pair[1].1);
        if i > 0 {
            assert!(
                lines[i * 2 - 1].1 <= pair[0].1,
                "run {i} started before the last ended"
            );
        }
    }
}
