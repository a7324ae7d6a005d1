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
    // The lost code (76 by default), not 1, which the wrapped tool may use for its own errors.
    assert_eq!(code.code(), Some(76));
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

/// Not granted has its own exit code (75 by default, like `flock -E`), which does not collide
/// with the wrapped tool's (terraform plan -detailed-exitcode uses 2).
#[test]
fn a_lock_that_cannot_be_had_runs_nothing_and_exits_with_the_conflict_code() {
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
    assert_eq!(out.status.code(), Some(75));
    assert!(!std::path::Path::new("/tmp/elock-run-should-not-exist").exists());
    let out = run_cmd(
        &server,
        &[
            "r",
            "--conflict-exit-code",
            "9",
            "--",
            "touch",
            "/tmp/elock-run-should-not-exist",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(9), "configurable");
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

/// A force-release reaches the command within a second, through the event stream, although the
/// lease's own renewal would come only after 20 s; the message says what happened and why; the
/// run exits with the lost code.
#[tokio::test]
async fn a_force_release_reaches_the_command_within_a_second() {
    let server = Server::start();
    let api = server.client();
    let started = Instant::now();
    let child = run_cmd(
        &server,
        &[
            "deploy/prod",
            "--owner",
            "ci-9",
            "--ttl",
            "60s",
            "--kill-after",
            "1s",
            "--",
            "sleep",
            "30",
        ],
    )
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    held(&api, "deploy/prod").await;
    let (status, _) = api
        .post(
            "/api/v1/resource/force-release",
            json!({"name": "deploy/prod", "reason": "maintenance window"}),
        )
        .await;
    assert_eq!(status, 200);
    let forced = Instant::now();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
        .await
        .unwrap();
    assert!(
        forced.elapsed() < Duration::from_secs(1),
        "stopped {:?} after the force-release",
        forced.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(out.status.code(), Some(76));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("force-released") && stderr.contains("maintenance window"),
        "{stderr}"
    );
}

/// The rest of the exit-code table: a command not found (127), one that cannot be executed
/// (126), a usage error (64), the lost code configurable.
#[test]
fn exit_codes_name_what_went_wrong() {
    let server = Server::start();
    let code = |args: &[&str]| run_cmd(&server, args).output().unwrap().status.code();
    assert_eq!(code(&["r", "--", "no-such-command-elock-test"]), Some(127));
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("not-executable");
    std::fs::write(&plain, "echo hi").unwrap();
    assert_eq!(code(&["r", "--", plain.to_str().unwrap()]), Some(126));
    assert_eq!(code(&["r", "--ttl", "soon", "--", "true"]), Some(64));
    assert_eq!(code(&["r", "--no-such-flag", "--", "true"]), Some(64));
    assert_eq!(
        code(&["r", "--", "sh", "-c", "exit 2"]),
        Some(2),
        "the child's own"
    );
    assert!(
        server.client().holder_blocking("r").is_null(),
        "released every time"
    );
}

/// `elock atlantis run` inside an Atlantis workflow step: the environment Atlantis sets gives
/// the lock key and owner Atlantis's own locking would use; the adapter lists the lock as
/// Atlantis's, another pull's try-lock is refused while the step runs, and the step's exit code
/// is passed on with the lock released after.
#[tokio::test]
async fn atlantis_run_takes_the_lock_atlantis_would_take() {
    let server = Server::start();
    let api = server.client();
    let child = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["atlantis", "run", "--", "sh", "-c", "sleep 1.5; exit 3"])
        .env("ELOCK_SERVER", &server.url)
        .envs([
            ("BASE_REPO_OWNER", "acme"),
            ("BASE_REPO_NAME", "infra"),
            ("PULL_NUM", "42"),
            ("PULL_AUTHOR", "alice"),
            ("USER_NAME", "alice"),
            ("REPO_REL_DIR", "envs/prod"),
            ("WORKSPACE", "default"),
            ("PROJECT_NAME", ""),
            ("COMMAND_NAME", "apply"),
        ])
        .spawn()
        .unwrap();
    let key = "acme/infra/envs/prod/default/";
    held(&api, key).await;
    let holder = api.holder(key).await;
    assert_eq!(holder["owner"], "acme/infra#42");
    let (_, locks) = api.get("/api/atlantis/v1/locks").await;
    assert_eq!(locks[key]["Pull"]["Num"], 42, "{locks}");
    assert_eq!(locks[key]["Project"]["Path"], "envs/prod", "{locks}");
    let (status, answer) = api
        .post(
            "/api/atlantis/v1/try-lock",
            json!({"Project": {"RepoFullName": "acme/infra", "Path": "envs/prod"},
                   "Pull": {"Num": 43}, "Workspace": "default"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(answer["LockAcquired"], false, "{answer}");
    let code = tokio::task::spawn_blocking(move || {
        let mut child = child;
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(code.code(), Some(3));
    assert!(api.holder(key).await.is_null(), "released after the step");
    // Outside a workflow step the missing variable is named (a usage error).
    let out = Command::new(env!("CARGO_BIN_EXE_elock"))
        .args(["atlantis", "run", "--", "true"])
        .env("ELOCK_SERVER", &server.url)
        .env_remove("PULL_NUM")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
}

/// The resource's lock policy (enhanced-locking.policies) fills in what `elock atlantis run`'s
/// flags leave out: the priority and ttl reach the lease, and a second pull's step waits by the
/// policy's wait instead of being refused. The adapter's try-lock takes the policy's ttl too.
#[tokio::test]
async fn atlantis_run_follows_the_resources_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("elock.yaml");
    std::fs::write(
        &config,
        "enhanced-locking:\n  policies:\n    - match: \"acme/infra/envs/prod/**\"\n      priority: critical\n      ttl: 90m\n      wait: 20s\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let server = Server::start_with(&data, &["--config", config.to_str().unwrap()]);
    let api = server.client();
    let step = |pull: &str, script: &str| {
        Command::new(env!("CARGO_BIN_EXE_elock"))
            .args(["atlantis", "run", "--", "sh", "-c", script])
            .env("ELOCK_SERVER", &server.url)
            .envs([
                ("BASE_REPO_OWNER", "acme"),
                ("BASE_REPO_NAME", "infra"),
                ("PULL_NUM", pull),
                ("REPO_REL_DIR", "envs/prod"),
                ("WORKSPACE", "default"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = step("42", "sleep 2");
    let key = "acme/infra/envs/prod/default/";
    held(&api, key).await;
    let holder = api.holder(key).await;
    assert_eq!(holder["priority"], "critical", "{holder}");
    assert_eq!(holder["ttl"], "1h30m", "{holder}");
    // Pull 43's step waits (the policy's 20s) instead of being refused, and runs after 42's.
    let started = Instant::now();
    let second = step("43", "true");
    let wait =
        |c: std::process::Child| tokio::task::spawn_blocking(move || c.wait_with_output().unwrap());
    let (a, b) = (wait(first).await.unwrap(), wait(second).await.unwrap());
    assert_eq!(a.status.code(), Some(0));
    assert_eq!(
        b.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&b.stderr)
    );
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "it waited for 42's step"
    );
    // The adapter's try-lock (Atlantis's locks never expire) takes the policy's ttl.
    let (status, answer) = api
        .post(
            "/api/atlantis/v1/try-lock",
            json!({"Project": {"RepoFullName": "acme/infra", "Path": "envs/prod"},
                   "Pull": {"Num": 44}, "Workspace": "default"}),
        )
        .await;
    assert_eq!(
        (status, &answer["LockAcquired"]),
        (200, &json!(true)),
        "{answer}"
    );
    assert_eq!(api.holder(key).await["ttl"], "1h30m");
    // The server explains the rule, to the API and to the CLI.
    let (status, e) = api.get(&format!("/api/v1/policy?name={key}")).await;
    assert_eq!(status, 200);
    assert_eq!(e["rule_index"], 0, "{e}");
    assert_eq!(e["wait"], "20s", "{e}");
    let (code, out) = server.cli(&["policy", "explain", key]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("policies[0] (match: acme/infra/envs/prod/**)") && out.contains("critical"),
        "{out}"
    );
}
