//! Long runs of the embedded store's log, by hand (figures in docs/benchmarks.md):
//!
//! - `restart N`: holds N leases, then times reopening the store twice: from the log alone
//!   (compaction off), and from the snapshot compaction wrote;
//! - `churn N [off]`: N operations (acquire + release of 64 workers, beside 1,000 leases held
//!   throughout), printing the data directory's size every tenth of the run; `off` turns
//!   compaction off, for the baseline: the disk the same run would use without it.
//!
//! ```sh
//! cargo run --release -p elock-core --example durable_log -- restart 1000000
//! cargo run --release -p elock-core --example durable_log -- churn 10000000
//! ```

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elock_core::clock::SystemClock;
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::{DurableStore, LogOptions, Store};
use elock_core::table::{AcquireRequest, TableConfig, WaitMode};
use elock_core::testkit::disk_use;

/// The server's allocator, so that the times are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WORKERS: u64 = 64;

fn req(id: u128, owner: &str, resource: String) -> AcquireRequest {
    AcquireRequest {
        lease_id: LeaseId::from_u128(id),
        ticket_id: TicketId::from_u128(id),
        owner: Owner::new(owner).unwrap(),
        resources: vec![ResourceName::new(&resource).unwrap()],
        priority: Priority::Normal,
        ttl: Some(Duration::from_secs(7_200)),
        metadata: None,
        wait: WaitMode::Try,
        reentry: Default::default(),
        queue_limits: Default::default(),
    }
}

fn open(dir: &Path, options: LogOptions) -> Arc<DurableStore> {
    Arc::new(
        DurableStore::open_with_options(
            dir,
            TableConfig::default(),
            Arc::new(SystemClock),
            options,
        )
        .expect("open the store"),
    )
}

/// How long reading every file of the directory takes, doing nothing with the bytes: what an
/// opening costs before it decodes anything.
fn read_files(dir: &Path) -> Duration {
    let started = Instant::now();
    for entry in std::fs::read_dir(dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        std::hint::black_box(bytes);
    }
    started.elapsed()
}

async fn restart(n: u64) {
    let dir = tempfile::tempdir().unwrap();
    let never = LogOptions {
        compact_after: u64::MAX,
        ..LogOptions::default()
    };
    let store = open(dir.path(), never);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WORKERS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = w;
            while i < n {
                let owner = format!("owner-{}", i % 1000);
                store
                    .acquire(req(
                        i as u128 + 1,
                        &owner,
                        format!("org/repo-{i}/dir/default"),
                    ))
                    .await
                    .unwrap();
                i += WORKERS;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    println!(
        "{n} leases taken in {:.1} s; {} MB on disk (log only)",
        started.elapsed().as_secs_f64(),
        disk_use(dir.path()) >> 20
    );
    drop(store);
    println!(
        "baseline, reading the files alone: {:.2} s",
        read_files(dir.path()).as_secs_f64()
    );
    let started = Instant::now();
    let store = open(
        dir.path(),
        LogOptions {
            compact_after: 1,
            ..LogOptions::default()
        },
    );
    println!(
        "reopened from the log in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // One more write starts a compaction (the log is over the threshold); closing waits for it.
    store
        .acquire(req(u128::MAX, "last", "last".into()))
        .await
        .unwrap();
    drop(store);
    println!("compacted: {} MB on disk", disk_use(dir.path()) >> 20);
    println!(
        "baseline, reading the files alone: {:.2} s",
        read_files(dir.path()).as_secs_f64()
    );
    let started = Instant::now();
    let store = open(dir.path(), never);
    println!(
        "reopened from the snapshot in {:.2} s ({} leases)",
        started.elapsed().as_secs_f64(),
        store.snapshot().await.unwrap().leases.len()
    );
}

async fn churn(n: u64, compaction: bool) {
    let dir = tempfile::tempdir().unwrap();
    let options = match compaction {
        true => LogOptions::default(),
        false => LogOptions {
            compact_after: u64::MAX,
            ..LogOptions::default()
        },
    };
    let store = open(dir.path(), options);
    for i in 0..1000u64 {
        store
            .acquire(req(u128::from(i) + 1, "kept", format!("kept-{i}")))
            .await
            .unwrap();
    }
    let started = Instant::now();
    let tenth = (n / 10).max(1);
    let mut largest = 0;
    for part in 0..10u64 {
        let mut tasks = Vec::new();
        for w in 0..WORKERS {
            let store = store.clone();
            // Each operation is an acquire or a release: a pair is two.
            let pairs = tenth / 2 / WORKERS;
            tasks.push(tokio::spawn(async move {
                for k in 0..pairs {
                    let id = 1_000_000 + (part * WORKERS + w) as u128 * 1_000_000_000 + k as u128;
                    store
                        .acquire(req(id, "churn", format!("churn-{w}")))
                        .await
                        .unwrap();
                    store.release(LeaseId::from_u128(id)).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let size = disk_use(dir.path());
        largest = largest.max(size);
        println!(
            "{:>11} operations, {:>6.1} s: {:>4} MB on disk ({} commits so far)",
            (part + 1) * tenth,
            started.elapsed().as_secs_f64(),
            size >> 20,
            store.stats().commits
        );
    }
    println!("largest: {} MB", largest >> 20);
}

#[tokio::main]
async fn main() {
    // The store's progress lines while it opens.
    tracing_subscriber::fmt().with_target(false).init();
    let args: Vec<String> = std::env::args().collect();
    let n = args.get(2).and_then(|n| n.parse().ok());
    match (args.get(1).map(String::as_str), n) {
        (Some("restart"), Some(n)) => restart(n).await,
        (Some("churn"), Some(n)) => churn(n, args.get(3).map(String::as_str) != Some("off")).await,
        _ => {
            eprintln!("usage: durable_log restart N | churn N [off]");
            std::process::exit(2);
        }
    }
}
