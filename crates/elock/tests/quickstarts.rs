//! The quick starts of docs/atlantis.md run as written: each `sh quickstart=NAME` block is run
//! with bash (`set -euo pipefail`) from the repository's root, with this build's `elock` first on
//! the PATH, its fixed ports (4142 for elock, 6399 for Redis) replaced by free ones, and its
//! whole process group killed after.

mod support;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The block of docs/atlantis.md tagged `quickstart=name`.
fn quickstart(name: &str) -> String {
    let doc = std::fs::read_to_string(root().join("docs/atlantis.md")).unwrap();
    let fence = format!("```sh quickstart={name}\n");
    let start = doc
        .find(&fence)
        .unwrap_or_else(|| panic!("no quick start {name}"))
        + fence.len();
    let end = start + doc[start..].find("```").unwrap();
    doc[start..end].to_string()
}

/// Runs a quick start; its output (stdout and stderr), or a failure with it.
fn run(name: &str) -> String {
    let (elock, redis) = (support::free_port(), support::free_port());
    let script = quickstart(name)
        .replace("4142", &elock.to_string())
        .replace("6399", &redis.to_string());
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_elock"));
    let path = format!(
        "{}:{}",
        bin.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out_file = tempfile::NamedTempFile::new().unwrap();
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(root())
        .env("PATH", path)
        .env("ELOCK_BIN", &bin)
        .env("ELOCK_SERVER", format!("http://127.0.0.1:{elock}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out_file.reopen().unwrap())
        .stderr(out_file.reopen().unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > Duration::from_secs(90) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // The servers it left running in the background.
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
    let output = std::fs::read_to_string(out_file.path()).unwrap();
    match status {
        Some(s) if s.success() => output,
        Some(s) => panic!("quick start {name} failed ({s}):\n{script}\n--- output:\n{output}"),
        None => panic!("quick start {name} ran over 90s:\n{output}"),
    }
}

#[test]
fn share_redis_runs_as_written() {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!("redis-server is not installed: run scripts/test, which installs it");
    }
    let out = run("share-redis");
    // Atlantis's record of the CLI's lock names pull 42; elock lists Atlantis's lock of pull 43.
    assert!(out.contains(r#""Num":42"#), "{out}");
    assert!(out.contains("acme/infra#43"), "{out}");
    assert!(
        out.contains("refused: Atlantis's pull 43 holds it"),
        "{out}"
    );
    assert!(out.contains("acme/infra#42"), "{out}");
}

#[test]
fn workflows_run_as_written() {
    let out = run("workflows");
    assert!(out.contains("applying with fencing token 1"), "{out}");
    assert!(out.contains("acme/infra/envs/prod/default/"), "{out}");
    assert!(out.contains("acme/infra#42"), "{out}");
}

#[test]
fn go_backend_runs_as_written() {
    if Command::new("go").arg("version").output().is_err() {
        panic!("go is not installed: run scripts/test, which installs golang-go");
    }
    let out = run("go-backend");
    assert!(out.contains("ok  \telock.dev/go/atlantislock"), "{out}");
    assert!(
        out.contains("locked acme/infra/envs/prod/default/ for pull 42"),
        "{out}"
    );
    assert!(out.contains("acme/infra#42"), "{out}");
}
