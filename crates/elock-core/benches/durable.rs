//! The embedded durable store under concurrency: every acquire and release is on disk before it
//! is acknowledged. Reports fsyncs (commits) per durable write: group commit must put it well
//! below 1. Baselines in the same run: one requester alone (one commit per write), and the
//! in-memory store with the same 64 requesters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use elock_core::clock::SystemClock;
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::{DurableStore, InMemoryStore, Store};
use elock_core::table::{AcquireRequest, TableConfig, WaitMode};

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// A try-lock of one resource with ttl 60s and ids made from `id`.
fn request(id: u64, owner: &Owner, resource: &str) -> AcquireRequest {
    AcquireRequest {
        lease_id: LeaseId::from_u128(id as u128),
        ticket_id: TicketId::from_u128(id as u128),
        owner: owner.clone(),
        resources: vec![ResourceName::new(resource).unwrap()],
        priority: Priority::Normal,
        ttl: Some(Duration::from_secs(60)),
        metadata: None,
        wait: WaitMode::Try,
        reentry: Default::default(),
        queue_limits: Default::default(),
    }
}

/// `total` acquisitions of distinct resources by `requesters` tasks; only the acquisitions are
/// timed: the releases afterwards keep the store's size bounded between samples.
async fn acquisitions(store: Arc<dyn Store>, requesters: u64, total: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..requesters)
        .map(|t| {
            let store = store.clone();
            let n = total / requesters + u64::from(t < total % requesters);
            tokio::spawn(async move {
                let owner = Owner::new(&format!("bench-{t}")).unwrap();
                let mut held = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                    let req = request(id, &owner, &format!("bench/{id}"));
                    held.push(store.acquire(req).await.unwrap().lease().unwrap().id);
                }
                held
            })
        })
        .collect();
    let mut held = Vec::new();
    for t in tasks {
        held.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    let releases: Vec<_> = held
        .chunks(held.len().div_ceil(requesters as usize).max(1))
        .map(|chunk| {
            let store = store.clone();
            let chunk = chunk.to_vec();
            tokio::spawn(async move {
                for id in chunk {
                    store.release(id).await.unwrap();
                }
            })
        })
        .collect();
    // All released before the next sample starts timing.
    for r in releases {
        r.await.unwrap();
    }
    elapsed
}

async fn pairs(store: Arc<dyn Store>, requesters: u64, total: u64) -> Duration {
    let start = Instant::now();
    let tasks: Vec<_> = (0..requesters)
        .map(|t| {
            let store = store.clone();
            let n = total / requesters + u64::from(t < total % requesters);
            tokio::spawn(async move {
                let owner = Owner::new(&format!("bench-{t}")).unwrap();
                for k in 0..n {
                    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
                    let req = request(id, &owner, &format!("bench/{t}/{}", k % 100));
                    let lease = store.acquire(req).await.unwrap();
                    store.release(lease.lease().unwrap().id).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn durable(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir_in(std::env::var("ELOCK_BENCH_DIR").unwrap_or_else(|_| ".".into()))
        .unwrap();
    let durable = Arc::new(
        DurableStore::open(dir.path(), TableConfig::default(), Arc::new(SystemClock)).unwrap(),
    );
    let memory: Arc<dyn Store> = Arc::new(InMemoryStore::new(
        TableConfig::default(),
        Arc::new(SystemClock),
    ));
    let mut g = c.benchmark_group("durable");
    // One element = one acquisition (each pair is two durable writes: the grant and the release).
    g.throughput(Throughput::Elements(1));
    for (label, pairs_too) in [("1 requester", false), ("64 requesters", true)] {
        let requesters = if pairs_too { 64 } else { 1 };
        let before = durable.stats();
        g.bench_function(format!("embedded, {label}: durable acquisitions"), |b| {
            b.iter_custom(|iters| rt.block_on(acquisitions(durable.clone(), requesters, iters)))
        });
        report(&durable, before, label, "acquisitions (releases untimed)");
        if pairs_too {
            let before = durable.stats();
            g.bench_function(format!("embedded, {label}: acquire+release pairs"), |b| {
                b.iter_custom(|iters| rt.block_on(pairs(durable.clone(), requesters, iters)))
            });
            report(&durable, before, label, "pairs");
        }
    }
    g.bench_function("baseline: in-memory, 64 requesters: acquisitions", |b| {
        b.iter_custom(|iters| rt.block_on(acquisitions(memory.clone(), 64, iters)))
    });
    g.finish();
}

fn report(
    store: &DurableStore,
    before: elock_core::store::DurableStoreStats,
    label: &str,
    what: &str,
) {
    let after = store.stats();
    let writes = after.writes - before.writes;
    let commits = after.commits - before.commits;
    let commit_time = after.commit_time - before.commit_time;
    eprintln!(
        "embedded, {label}, {what}: {writes} durable writes in {commits} commits = {:.4} fsyncs per write; {:.0} writes per commit, {:.0} µs per commit",
        commits as f64 / writes as f64,
        writes as f64 / commits as f64,
        commit_time.as_micros() as f64 / commits as f64
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = durable
}
criterion_main!(benches);
