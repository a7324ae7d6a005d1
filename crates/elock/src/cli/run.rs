//! `elock run`: hold a lock while a command runs (made for Atlantis workflow `run:` steps).
//!
//! Each run is its own holder: it refuses re-entry, so two runs with the same `--owner` (an
//! Atlantis step passes `$REPO#$PULL`) exclude each other. The child gets `ELOCK_LEASE_ID`,
//! `ELOCK_FENCING_TOKEN` (of the first resource) and `ELOCK_FENCING_TOKENS` (JSON, every
//! resource). The lease is renewed at a third of its ttl, and the event stream is followed: if
//! the lease is lost (force-released, expired, released by someone else) the child hears it at
//! once: SIGTERM, then SIGKILL after `--kill-after`. When the child ends, or on Ctrl-C / SIGTERM,
//! the lock is released. Exit codes (see [`RunArgs`]) never collide with the wrapped tool's own
//! unless configured to.

use std::io::IsTerminal;
use std::process::Stdio;
use std::time::{Duration, Instant};

use elock_client::api::{ErrorCode, EventType, Lease};
use elock_client::{Client, LeaseGuard};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use super::errors::CliError;
use super::locks::{duration, priority};

/// Exit codes of `elock run` that are its own (the child's code is passed on otherwise).
pub mod code {
    /// A mistake on the command line (sysexits' EX_USAGE).
    pub const USAGE: i32 = 64;
    /// The server could not be reached or its backend is down (EX_UNAVAILABLE).
    pub const UNAVAILABLE: i32 = 69;
    /// Any other refusal by the server (EX_SOFTWARE).
    pub const ERROR: i32 = 70;
    /// Not granted (locked, the wait ran out, or a deadlock), by default (EX_TEMPFAIL).
    pub const CONFLICT: i32 = 75;
    /// The lock was lost while the command ran (the command was stopped), by default.
    pub const LOST: i32 = 76;
    /// The command exists but cannot be executed.
    pub const NOT_EXECUTABLE: i32 = 126;
    /// The command was not found.
    pub const NOT_FOUND: i32 = 127;
    /// Interrupted (SIGINT or SIGTERM), as shells report Ctrl-C.
    pub const INTERRUPTED: i32 = 130;
}

/// The exit-code table of `--help` (`elock run` and `elock atlantis run`).
pub const EXIT_CODES: &str = "\
Exit codes:
  the command's own    it ran to the end holding the lock (128 + N if signal N ended it)
  75                   not granted: locked, the wait ran out, or a deadlock (--conflict-exit-code)
  76                   the lock was lost while the command ran; it was stopped (--lost-exit-code)
  64                   usage error
  69                   the server cannot be reached, or its backend is down
  70                   any other refusal by the server
  126 / 127            the command cannot be executed / was not found
  130                  interrupted (Ctrl-C, SIGTERM); the lock is released";

/// Hold a lock while a command runs.
#[derive(clap::Args, Debug)]
#[command(after_long_help = EXIT_CODES)]
pub struct RunArgs {
    /// The resources to hold while the command runs (all or none).
    #[arg(required = true)]
    pub resources: Vec<String>,
    /// Who holds the lock, as people see it (default: elock-run@HOST:PID). Each run is still its
    /// own holder: two runs with the same --owner exclude each other.
    #[arg(long)]
    pub owner: Option<String>,
    #[command(flatten)]
    pub options: RunOptions,
    /// Holder metadata (`elock atlantis run` puts Atlantis's ProjectLock here).
    #[arg(skip)]
    pub metadata: Option<elock_client::api::Metadata>,
}

/// How to hold the lock and run the command: shared by `elock run` and `elock atlantis run`.
#[derive(clap::Args, Debug)]
pub struct RunOptions {
    /// low, normal, high, critical (or 0..3). Default: the resource's lock policy on the server
    /// (enhanced-locking.policies), else normal.
    #[arg(long)]
    pub priority: Option<String>,
    /// Lease lifetime; renewed at a third of it while the command runs. Default: the resource's
    /// policy ttl, else 60s (short, so that a run that dies frees the lock soon).
    #[arg(long)]
    pub ttl: Option<String>,
    /// How long to wait for the lock (0: try once). Default: the resource's policy wait, else 0.
    #[arg(long)]
    pub wait: Option<String>,
    /// After SIGTERM, how long the command has to stop before SIGKILL.
    #[arg(long, default_value = "10s")]
    pub kill_after: String,
    /// Exit code when the lock is not granted (like flock -E).
    #[arg(long, default_value_t = code::CONFLICT)]
    pub conflict_exit_code: i32,
    /// Exit code when the lock is lost while the command runs.
    #[arg(long, default_value_t = code::LOST)]
    pub lost_exit_code: i32,
    /// No progress lines on a terminal.
    #[arg(long, short)]
    pub quiet: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The exit code for an error before the command ran.
fn refused(e: &elock_client::Error, args: &RunArgs) -> i32 {
    match e.code() {
        Some(ErrorCode::Locked | ErrorCode::WaitTimeout | ErrorCode::Deadlock) => {
            args.options.conflict_exit_code
        }
        Some(ErrorCode::BackendUnavailable | ErrorCode::Overloaded | ErrorCode::ShuttingDown) => {
            code::UNAVAILABLE
        }
        Some(_) => code::ERROR,
        None if e.is_unreachable() => code::UNAVAILABLE,
        None => code::ERROR,
    }
}

fn usage(e: CliError) -> CliError {
    CliError {
        exit: code::USAGE,
        ..e
    }
}

/// A run's ttl when neither its flag nor a policy gives one.
const RUN_TTL: Duration = Duration::from_secs(60);

pub async fn run(client: &Client, args: RunArgs) -> Result<i32, CliError> {
    let kill_after = duration("kill-after", &args.options.kill_after).map_err(usage)?;
    let ttl = args.options.ttl.as_deref().map(|t| duration("ttl", t));
    let wait = args.options.wait.as_deref().map(|w| duration("wait", w));
    let (mut ttl, mut wait) = (
        ttl.transpose().map_err(usage)?,
        wait.transpose().map_err(usage)?,
    );
    // What the flags leave out comes from the resource's policy on the server; the priority is
    // left to the server, the ttl and wait are settled here, as this process must know them
    // (renewals, and whether a Ctrl-C can take the answer of a try-lock at once).
    if ttl.is_none() || wait.is_none() {
        let policy = client.policy(&args.resources[0]).await.ok();
        let rule = policy.as_ref().and_then(|e| e.rule.as_ref());
        ttl = ttl.or_else(|| {
            let max = rule.and_then(|r| r.max_ttl).unwrap_or(Duration::MAX);
            Some(rule.and_then(|r| r.ttl).unwrap_or(RUN_TTL).min(max))
        });
        wait = wait.or_else(|| policy.map(|e| e.wait).filter(|w| !w.is_zero()));
    }
    let ttl = ttl.unwrap_or(RUN_TTL);
    // Listening before the lock is asked for: a signal at any moment from here on releases
    // what was taken, instead of killing this process with the lock held until its ttl.
    let mut interrupt = signals();
    let owner = args.owner.clone().unwrap_or_else(default_owner);
    // Each run is its own holder: never granted by re-entry.
    let mut req = client
        .lock(&owner, &args.resources)
        .map_err(|e| usage(CliError::from(e)))?
        .ttl(ttl)
        .refuse_reentry();
    if let Some(p) = &args.options.priority {
        req = req.priority(priority(p).map_err(usage)?);
    }
    if let Some(w) = wait {
        req = req.wait(w);
    }
    if let Some(m) = args.metadata.clone() {
        req = req.metadata(m);
    }
    // Subscribed before the acquire, so that the end of the lease cannot fall in between.
    let events = client
        .events(&[
            EventType::LockReleased,
            EventType::LockExpired,
            EventType::LockForceReleased,
        ])
        .await;
    let events = match events {
        Ok(e) => Some(e),
        Err(e) if e.is_unreachable() => {
            return Err(CliError {
                exit: code::UNAVAILABLE,
                message: e.to_string(),
                body: None,
            })
        }
        Err(e) => {
            eprintln!(
                "elock run: no event stream ({e}); a lost lock is noticed at the next renewal"
            );
            None
        }
    };
    let progress = (!args.options.quiet && std::io::stderr().is_terminal()).then(|| {
        tokio::spawn(super::progress::show(
            client.clone(),
            args.resources[0].clone(),
            owner.clone(),
            "elock run",
        ))
    });
    let started = Instant::now();
    let call = req.acquire();
    tokio::pin!(call);
    let result = tokio::select! {
        lease = &mut call => Some(lease),
        _ = interrupt.recv() => None,
    };
    if let Some(p) = progress {
        p.abort();
        eprint!("\r\x1b[K");
    }
    let lease = match result {
        Some(Ok(lease)) => lease,
        Some(Err(e)) => {
            eprintln!("elock run: {e}");
            return Ok(refused(&e, &args));
        }
        None => {
            eprintln!("elock run: interrupted while asking for the lock");
            if wait.is_none() {
                // A try-lock answers at once: take the answer, and give back what it granted.
                if let Ok(lease) = call.await {
                    let _ = client.release(lease.id).await;
                }
            }
            // Dropping a waiting request closes its connection: the server cancels the ticket,
            // or releases a lease granted in the meantime.
            return Ok(code::INTERRUPTED);
        }
    };
    if !args.options.quiet && std::io::stderr().is_terminal() {
        eprintln!(
            "elock run: acquired {} (fencing token {}) after {}",
            args.resources.join(", "),
            first_token(&lease),
            elock_core::model::format_duration(started.elapsed())
        );
    }
    let guard = match events {
        Some(events) => LeaseGuard::watching(client.clone(), lease.clone(), events),
        None => LeaseGuard::new(client.clone(), lease.clone()),
    };
    let tokens: std::collections::BTreeMap<&str, u64> = lease
        .resources
        .iter()
        .map(|r| (r.resource.as_str(), r.fencing_token))
        .collect();
    let tokens = serde_json::to_string(&tokens).unwrap_or_default();
    let Some((program, rest)) = args.options.command.split_first() else {
        give_back(guard).await;
        return Err(CliError {
            exit: code::USAGE,
            message: "give the command after --".into(),
            body: None,
        });
    };
    if interrupt.try_recv().is_ok() {
        eprintln!("elock run: interrupted; releasing the lock without running the command");
        give_back(guard).await;
        return Ok(code::INTERRUPTED);
    }
    let mut child = match Command::new(program)
        .args(rest)
        .env("ELOCK_LEASE_ID", lease.id.to_string())
        .env("ELOCK_FENCING_TOKEN", first_token(&lease))
        .env("ELOCK_FENCING_TOKENS", tokens)
        .stdin(Stdio::inherit())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            give_back(guard).await;
            eprintln!("elock run: cannot start {program:?}: {e}");
            return Ok(match e.kind() {
                std::io::ErrorKind::NotFound => code::NOT_FOUND,
                _ => code::NOT_EXECUTABLE,
            });
        }
    };
    let code = tokio::select! {
        status = child.wait() => exit_code(status),
        loss = guard.lost() => {
            eprintln!("elock run: the lock on {} was lost ({loss}); stopping the command", args.resources.join(", "));
            stop(&mut child, kill_after).await;
            args.options.lost_exit_code
        }
        _ = interrupt.recv() => {
            eprintln!("elock run: interrupted; stopping the command and releasing the lock");
            stop(&mut child, kill_after).await;
            code::INTERRUPTED
        }
    };
    if guard.loss().is_none() {
        give_back(guard).await;
    }
    Ok(code)
}

fn first_token(lease: &Lease) -> String {
    lease
        .resources
        .first()
        .map_or(String::new(), |r| r.fencing_token.to_string())
}

/// SIGTERM, then SIGKILL after `kill_after`.
async fn stop(child: &mut Child, kill_after: Duration) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
        if tokio::time::timeout(kill_after, child.wait()).await.is_ok() {
            return;
        }
    }
    let _ = child.kill().await;
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

fn exit_code(status: std::io::Result<std::process::ExitStatus>) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Ok(s) => s
            .code()
            .or_else(|| s.signal().map(|sig| 128 + sig))
            .unwrap_or(code::ERROR),
        Err(_) => code::ERROR,
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
