//! `elock run`: hold a lock while a command runs (made for Atlantis workflow `run:` steps).
//!
//! The child gets `ELOCK_LEASE_ID`, `ELOCK_FENCING_TOKEN` (of the first resource) and
//! `ELOCK_FENCING_TOKENS` (JSON, every resource). The lease is renewed at a third of its ttl. If
//! it is lost (released by force, expired while the server was unreachable), the child is stopped:
//! SIGTERM, then SIGKILL after a grace period. When the child ends, or on Ctrl-C / SIGTERM, the
//! lock is released. The child's exit code is passed on (128 + signal if a signal ended it).

use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::process::{Child, Command};

use super::client::{exit, CliError, Client};

/// How long a child has to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

pub struct RunArgs {
    pub resources: Vec<String>,
    pub owner: Option<String>,
    pub priority: Option<String>,
    pub ttl: String,
    pub wait: Option<String>,
    pub command: Vec<String>,
}

/// The exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
const INTERRUPTED: i32 = 130;

pub async fn run(client: &Client, args: RunArgs) -> Result<i32, CliError> {
    let ttl = elock_core::model::parse_duration("ttl", &args.ttl)
        .map_err(|e| CliError::usage(e.to_string()))?;
    // Listening before the lock is asked for: a signal at any moment from here on releases
    // what was taken, instead of killing this process with the lock held until its ttl.
    let mut interrupt = signals();
    let owner = args.owner.unwrap_or_else(default_owner);
    let mut body = json!({ "resources": args.resources, "owner": owner, "ttl": args.ttl });
    if let Some(p) = args.priority {
        body["priority"] = json!(p);
    }
    let waits = args.wait.is_some();
    if let Some(w) = args.wait {
        body["wait"] = json!(w);
    }
    let call = client.call(Method::POST, "/api/v1/locks", &[], Some(body));
    tokio::pin!(call);
    let lease = tokio::select! {
        lease = &mut call => lease?,
        _ = interrupt.recv() => {
            eprintln!("elock run: interrupted while asking for the lock");
            if waits {
                // Dropping a waiting request closes its connection: the server cancels the
                // ticket, or releases a lease granted in the meantime.
                return Ok(INTERRUPTED);
            }
            // A try-lock answers at once: take the answer, and give back what it granted.
            if let Ok(lease) = call.await {
                release(client, lease["id"].as_str().unwrap_or_default()).await;
            }
            return Ok(INTERRUPTED);
        }
    };
    let id = lease["id"].as_str().unwrap_or_default().to_string();
    let tokens: serde_json::Map<String, Value> = lease["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            (
                r["resource"].as_str().unwrap_or_default().to_string(),
                r["fencing_token"].clone(),
            )
        })
        .collect();
    let first_token = lease["resources"][0]["fencing_token"].to_string();
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| CliError::usage("give the command after --"))?;
    if interrupt.try_recv().is_ok() {
        eprintln!("elock run: interrupted; releasing the lock without running the command");
        release(client, &id).await;
        return Ok(INTERRUPTED);
    }
    let mut child = match Command::new(program)
        .args(rest)
        .env("ELOCK_LEASE_ID", &id)
        .env("ELOCK_FENCING_TOKEN", &first_token)
        .env("ELOCK_FENCING_TOKENS", Value::Object(tokens).to_string())
        .stdin(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            release(client, &id).await;
            return Err(CliError::usage(format!("cannot start {program:?}: {e}")));
        }
    };
    let code = supervise(client, &id, ttl, &lease, &mut child, &mut interrupt).await;
    release(client, &id).await;
    Ok(code)
}

/// Waits for the child, renewing the lease; stops the child if the lease is lost or we are asked
/// to stop. Returns the exit code to pass on.
async fn supervise(
    client: &Client,
    id: &str,
    ttl: Duration,
    lease: &Value,
    child: &mut Child,
    interrupt: &mut tokio::sync::mpsc::Receiver<()>,
) -> i32 {
    let every = (ttl / 3).max(Duration::from_millis(100));
    let mut expires = deadline_of(lease);
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            status = child.wait() => return exit_code(status),
            _ = tick.tick() => {
                match client.call(Method::POST, &format!("/api/v1/locks/{id}/renew"), &[], Some(json!({}))).await {
                    Ok(renewed) => expires = deadline_of(&renewed),
                    Err(e) if e.exit == exit::UNREACHABLE && Instant::now() < expires => {
                        eprintln!("elock run: cannot renew yet ({}); the lease holds until its deadline", e.message);
                    }
                    Err(e) => {
                        eprintln!("elock run: the lease was lost ({}); stopping the command", e.message);
                        stop(child).await;
                        return exit::ERROR;
                    }
                }
            }
            _ = interrupt.recv() => {
                eprintln!("elock run: interrupted; stopping the command and releasing the lock");
                stop(child).await;
                return INTERRUPTED;
            }
        }
    }
}

/// SIGTERM, then SIGKILL after the grace period.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(GRACE, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
}

async fn release(client: &Client, id: &str) {
    if let Err(e) = client
        .call(Method::DELETE, &format!("/api/v1/locks/{id}"), &[], None)
        .await
    {
        if e.exit != exit::ERROR {
            eprintln!(
                "elock run: could not release {id}: {} (it expires at its deadline)",
                e.message
            );
        }
    }
}

/// When the lease expires, as an instant of this process (from its remaining time).
fn deadline_of(lease: &Value) -> Instant {
    let remaining = lease["expires_at"]
        .as_str()
        .and_then(|t| elock_core::model::Timestamp::parse_rfc3339(t).ok())
        .map(|t| {
            t.since(elock_core::model::Timestamp::from_system(
                std::time::SystemTime::now(),
            ))
        })
        .unwrap_or(Duration::ZERO);
    Instant::now() + remaining
}

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(exit::ERROR),
        Err(_) => exit::ERROR,
    }
}

fn default_owner() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_string())
        })
        .unwrap_or_else(|| "localhost".into());
    format!("elock-run@{host}:{}", std::process::id())
}

/// SIGINT and SIGTERM, as one stream.
fn signals() -> tokio::sync::mpsc::Receiver<()> {
    let (tx, rx) = tokio::sync::mpsc::channel(1);
    for kind in [
        tokio::signal::unix::SignalKind::interrupt(),
        tokio::signal::unix::SignalKind::terminate(),
    ] {
        if let Ok(mut s) = tokio::signal::unix::signal(kind) {
            let tx = tx.clone();
            tokio::spawn(async move {
                while s.recv().await.is_some() {
                    let _ = tx.send(()).await;
                }
            });
        }
    }
    rx
}
