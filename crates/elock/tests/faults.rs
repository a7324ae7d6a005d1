//! The fault suite: clients take locks and write through a register that refuses stale fencing
//! tokens while a nemesis kill -9s servers, freezes Redis and freezes clients past their ttl; a
//! history checker then holds the run to elock's guarantees (faultkit/history.rs):
//!
//! - fencing tokens per resource never repeat or go back;
//! - no two acknowledged holders overlap while both leases are valid;
//! - no stale write is accepted, and no valid holder's write is refused;
//! - no acknowledged grant or release is lost;
//! - every waiter is answered within its wait and a bound;
//! - nobody is granted after their client stopped waiting (no ghost holders).
//!
//! Runs are seeded (the seed is printed). The test command runs a bounded form; a longer run by
//! hand: `ELOCK_FAULTS_SECS=600 ELOCK_FAULTS_SEED=1 cargo test --release -p elock --test faults
//! -- --nocapture` (figures in docs/engine.md and docs/redis.md).

mod faultkit;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use elock_redis::testing::{unique_prefix, RedisServer};
use faultkit::nemesis::{self, Elock};
use faultkit::{Plan, Targets};

/// The embedded store under kill -9 of its server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_under_kill_9() {
    let plan = Plan::from_env(15);
    let dir = tempfile::tempdir().unwrap();
    let elock = Elock::start(dir.path().join("data"), Vec::new());
    let targets = Targets::new(vec![elock.url()]);
    let elock = Arc::new(Mutex::new(elock));
    let seed = plan.seed;
    let t = targets.clone();
    faultkit::run(plan, targets, move |rec, stop| {
        nemesis::embedded(seed, elock, t, rec, stop)
    })
    .await;
}

/// Two elock servers on one Redis (append-only, fsync always) under kill -9 of Redis, Redis
/// frozen past the call timeout, and kill -9 of either elock server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_store_under_redis_and_server_faults() {
    // A server that dies is known to be gone when its heartbeat runs out (node-timeout 1s,
    // beats every third of it): until then a release may hand a lease to one of its waiters,
    // which is then released. The bound leaves room for a loaded machine's late beats; the ttl
    // is longer still, so a lease left to expire would be caught.
    let plan = Plan {
        ttl: Duration::from_secs(6),
        ghost_bound: Some(Duration::from_secs(4)),
        ..Plan::from_env(20)
    };
    let redis = RedisServer::start(&["--appendonly", "yes", "--appendfsync", "always"]);
    let prefix = unique_prefix();
    let dirs: Vec<tempfile::TempDir> = (0..2).map(|_| tempfile::tempdir().unwrap()).collect();
    let elocks: Vec<Elock> = dirs
        .iter()
        .map(|d| {
            let config = d.path().join("elock.yaml");
            std::fs::write(
                &config,
                format!(
                    "enhanced-locking:\n  backend: redis\nredis:\n  addresses: [\"{}\"]\n  key-prefix: \"{prefix}\"\n  node-timeout: 1s\n  response-timeout: 1s\n",
                    redis.address()
                ),
            )
            .unwrap();
            Elock::start(
                d.path().join("data"),
                vec!["--config".into(), config.to_string_lossy().into_owned()],
            )
        })
        .collect();
    let targets = Targets::new(elocks.iter().map(Elock::url).collect());
    let elocks: Vec<_> = elocks
        .into_iter()
        .map(|e| Arc::new(Mutex::new(e)))
        .collect();
    let redis = Arc::new(Mutex::new(redis));
    let seed = plan.seed;
    let t = targets.clone();
    faultkit::run(plan, targets, move |rec, stop| {
        nemesis::redis(
            seed,
            redis,
            elocks,
            t,
            rec,
            stop,
            Duration::from_millis(1500),
        )
    })
    .await;
}
