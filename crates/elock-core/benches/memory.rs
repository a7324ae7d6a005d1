//! Memory per held lease in the in-memory store at 1,000,000 held leases, measured by a counting
//! allocator (every byte the store's maps, names and records allocate).
//!
//! `cargo bench -p elock-core --bench memory` prints the figure; docs/benchmarks.md records it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use std::time::{Duration, Instant};

use elock_core::clock::ManualClock;
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::InMemoryStore;
use elock_core::table::{AcquireRequest, Op, TableConfig, WaitMode};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const LEASES: usize = 1_000_000;

fn measure(label: &str, owner_of: impl Fn(usize) -> String) {
    let clock = ManualClock::at_epoch_2026();
    let store = InMemoryStore::new(TableConfig::default(), clock);
    let before = LIVE.load(Ordering::Relaxed);
    let start = Instant::now();
    for i in 0..LEASES {
        let req = AcquireRequest {
            lease_id: LeaseId::random(),
            ticket_id: TicketId::random(),
            owner: Owner::new(&owner_of(i)).unwrap(),
            resources: vec![ResourceName::new(&format!("acme/infra/envs/{i}/default/")).unwrap()],
            priority: Priority::Normal,
            ttl: Some(Duration::from_secs(3600)),
            metadata: None,
            wait: WaitMode::Try,
            reentry: Default::default(),
            queue_limits: Default::default(),
        };
        store.apply_now(Op::Acquire(req)).unwrap();
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    assert_eq!(store.with_table(|t| t.lease_count()), LEASES);
    println!(
        "{label}: {LEASES} held leases use {:.1} MiB: {:.0} bytes per lease (built in {:.2?})",
        bytes as f64 / 1048576.0,
        bytes as f64 / LEASES as f64,
        start.elapsed()
    );
    drop(store);
}

/// The same resource names mapped to a 16-byte id in a plain map: what any lock service must at
/// least keep, measured in the same run as the store.
fn baseline() {
    let before = LIVE.load(Ordering::Relaxed);
    let mut map: std::collections::HashMap<String, [u8; 16]> = std::collections::HashMap::new();
    for i in 0..LEASES {
        map.insert(format!("acme/infra/envs/{i}/default/"), rand::random());
    }
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "baseline (HashMap<String, [u8; 16]> of the same names): {:.1} MiB: {:.0} bytes per entry",
        bytes as f64 / 1048576.0,
        bytes as f64 / LEASES as f64
    );
    drop(map);
}

fn main() {
    // `cargo test --benches` runs bench targets with `--bench` absent: keep that quick.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    baseline();

    measure("one owner per lease (acme/infra#i)", |i| {
        format!("acme/infra#{i}")
    });
    measure("1,000 owners sharing the leases", |i| {
        format!("acme/infra#{}", i % 1000)
    });
}
