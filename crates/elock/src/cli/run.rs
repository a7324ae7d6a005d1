//! `elock run`: hold a lock while a command runs (made for Atlantis workflow `run:` steps).
//!
//! The child gets `ELOCK_LEASE_ID`, `ELOCK_FENCING_TOKEN` (of the first resource) and
//! `ELOCK_FENCING_TOKENS` (JSON, every resource). The lease is renewed at a third of its ttl. If
//! it is lost (released by force, expired while the server was unreachable), the child is stopped:
//! SIGTERM, then SIGKILL after a grace period. When the child ends, or on Ctrl-C / SIGTERM, the
//! lock is released. The child's exit code is passed on (128 + signal if a signal ended it).

use std::process::Stdio;
use std::time::Duration;

use elock_client::api::Lease;
use elock_client::{Client, LeaseGuard};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::errors::{exit, CliError};
use super::locks::{duration, priority};

/// How long a child has to stop after SIGTERM before SIGKILL.
const GRACE: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Who holds the lock (default: elock-run@HOST:PID).
    #[arg(long)]
    pub owner: Option<String>,
    /// low, normal, high, critical (or 0..3).
    #[arg(long)]
    pub priority: Option<String>,
    /// Lease lifetime; renewed at a third of it while the command runs.
    #[arg(long, default_value = "60s")]
    pub ttl: String,
    /// How long to wait for the lock (0: try once).
    #[arg(long)]
    pub wait: Option<String>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The exit code after SIGINT or SIGTERM (128 + SIGINT, as shells report Ctrl-C).
const INTERRUPTED: i32 = 130;

pub async fn run(client: &Client, args: RunArgs) -> Result<i32, CliError> {
    let ttl = duration("ttl", &args.ttl)?;
    // Listening before the lock is asked for: a signal at any moment from here on releases
    // what was taken, instead of killing this process with the lock held until its ttl.
    let mut interrupt = signals();
    let owner = args.owner.unwrap_or_else(default_owner);
    // Each run is its own holder: never granted by re-entry, so two runs under one --owner
    // exclude each other.
    let mut req = client
        .lock(&owner, &args.resources)?
        .ttl(ttl)
        .refuse_reentry();
    if let Some(p) = &args.priority {
        req = req.priority(priority(p)?);
    }
    let waits = args.wait.is_some();
    if let Some(w) = &args.wait {
        req = req.wait(duration("wait", w)?);
    }
    let call = req.acquire();
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
                release(client, &lease).await;
            }
            return Ok(INTERRUPTED);
        }
    };
    // From here the guard renews the lease at a third of its ttl and says when it is lost.
    let guard = LeaseGuard::new(client.clone(), lease.clone());
    let tokens: std::collections::BTreeMap<&str, u64> = lease
        .resources
        .iter()
        .map(|r| (r.resource.as_str(), r.fencing_token))
        .collect();
    let tokens = serde_json::to_string(&tokens).unwrap_or_default();
    let first_token = lease
        .resources
        .first()
        .map_or(String::new(), |r| r.fencing_token.to_string());
    let Some((program, rest)) = args.command.split_first() else {
        give_back(guard).await;
        return Err(CliError::usage("give the command after --"));
    };
    if interrupt.try_recv().is_ok() {
        eprintln!("elock run: interrupted; releasing the lock without running the command");
        give_back(guard).await;
        return Ok(INTERRUPTED);
    }
    let mut child = match Command::new(program)
        .args(rest)
        .env("ELOCK_LEASE_ID", lease.id.to_string())
        .env("ELOCK_FENCING_TOKEN", &first_token)
        .env("ELOCK_FENCING_TOKENS", tokens)
        .stdin(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            give_back(guard).await;
            return Err(CliError::usage(format!("cannot start {program:?}: {e}")));
        }
    };
    let code = supervise(&guard, &mut child, &mut interrupt).await;
    if guard.loss().is_none() {
        give_back(guard).await;
    }
    Ok(code)
}

/// Releases the guarded lease; only an unreachable server is worth a message (the lease then
/// expires at its deadline).
async fn give_back(guard: LeaseGuard) {
    let id = guard.id();
    if let Err(e) = guard.release().await {
        if e.is_unreachable() {
            eprintln!("elock run: could not release {id}: {e} (it expires at its deadline)");
        }
    }
}

/// Waits for the child; stops it if the lease is lost or we are asked to stop. Returns the
/// exit code to pass on.
async fn supervise(
    guard: &LeaseGuard,
    child: &mut Child,
    interrupt: &mut tokio::sync::mpsc::Receiver<()>,
) -> i32 {
    tokio::select! {
        status = child.wait() => exit_code(status),
        loss = guard.lost() => {
            eprintln!("elock run: the lock was lost ({loss}); stopping the command");
            stop(child).await;
            exit::ERROR
        }
        _ = interrupt.recv() => {
            eprintln!("elock run: interrupted; stopping the command and releasing the lock");
            stop(child).await;
            INTERRUPTED
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

/// Gives back a lease taken before the guard existed.
async fn release(client: &Client, lease: &Lease) {
    if let Err(e) = client.release(lease.id).await {
        if e.is_unreachable() {
            eprintln!(
                "elock run: could not release {}: {e} (it expires at its deadline)",
                lease.id
            );
        }
    }
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
