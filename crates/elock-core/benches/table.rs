//! The pure lock table on one core: uncontended acquire + release pairs, and handoffs on one hot
//! resource with 100 waiters. Baseline in the same run: a HashMap insert + remove of the same
//! keys (what any lock table must at least do).

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId, Timestamp};
use elock_core::table::{AcquireRequest, LockTable, TableConfig, WaitMode};

fn request(
    n: u128,
    owner: &Owner,
    resource: &ResourceName,
    wait: WaitMode,
    priority: Priority,
) -> AcquireRequest {
    AcquireRequest {
        lease_id: LeaseId::from_u128(n),
        ticket_id: TicketId::from_u128(n),
        owner: owner.clone(),
        resources: vec![resource.clone()],
        priority,
        ttl: Some(Duration::from_secs(60)),
        metadata: None,
        wait,
        reentry: Default::default(),
        queue_limits: Default::default(),
    }
}

fn uncontended(c: &mut Criterion) {
    let resources: Vec<ResourceName> = (0..10_000)
        .map(|i| ResourceName::new(&format!("acme/infra/envs/{i}/default/")).unwrap())
        .collect();
    let owners: Vec<Owner> = (0..1000)
        .map(|i| Owner::new(&format!("acme/infra#{i}")).unwrap())
        .collect();
    let mut g = c.benchmark_group("table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("uncontended acquire+release", |b| {
        let mut table = LockTable::new(TableConfig::default());
        let now = Timestamp::from_millis(1_767_225_600_000);
        let mut n: u128 = 0;
        b.iter(|| {
            n += 1;
            let i = n as usize;
            let req = request(
                n,
                &owners[i % owners.len()],
                &resources[i % resources.len()],
                WaitMode::Try,
                Priority::Normal,
            );
            let lease = table.acquire(req, now).unwrap();
            let id = lease.lease().unwrap().id;
            black_box(table.release(id, now).unwrap());
            table.take_events();
        })
    });
    g.bench_function("baseline: hashmap insert+remove", |b| {
        let mut map: HashMap<ResourceName, LeaseId, ahash::RandomState> = HashMap::default();
        let mut n: u128 = 0;
        b.iter(|| {
            n += 1;
            let r = &resources[n as usize % resources.len()];
            map.insert(r.clone(), LeaseId::from_u128(n));
            black_box(map.remove(r));
        })
    });
    g.finish();
}

fn hot(c: &mut Criterion) {
    let resource = ResourceName::new("acme/infra/envs/prod/default/").unwrap();
    let owners: Vec<Owner> = (0..101)
        .map(|i| Owner::new(&format!("acme/infra#{i}")).unwrap())
        .collect();
    let far = Timestamp::from_millis(u64::MAX / 2);
    let wait = WaitMode::Queue {
        deadline: Some(far),
        detached: true,
    };
    let mut g = c.benchmark_group("table");
    g.throughput(Throughput::Elements(1));
    g.bench_function("hot resource, 100 waiters: handoff", |b| {
        let mut table = LockTable::new(TableConfig::default());
        let now = Timestamp::from_millis(1_767_225_600_000);
        // One holder and 100 waiters of mixed priorities.
        let mut holder = table
            .acquire(
                request(0, &owners[0], &resource, WaitMode::Try, Priority::Normal),
                now,
            )
            .unwrap()
            .lease()
            .unwrap()
            .clone();
        for i in 1..=100u128 {
            let p = Priority::from_level_saturating((i % 4) as u8);
            table
                .acquire(request(i, &owners[i as usize], &resource, wait, p), now)
                .unwrap();
        }
        table.take_events();
        let mut n: u128 = 1000;
        b.iter(|| {
            // Release: the head is granted in the same step; the old holder queues again.
            let released = table.release(holder.id, now).unwrap();
            n += 1;
            let p = Priority::from_level_saturating((n % 4) as u8);
            table
                .acquire(request(n, &released.owner, &resource, wait, p), now)
                .unwrap();
            let events = table.take_events();
            holder = events
                .iter()
                .find_map(|e| e.lease.as_deref())
                .expect("handed off")
                .clone();
            black_box(&holder);
        });
        assert_eq!(table.ticket_count(), 100);
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(4)).warm_up_time(Duration::from_secs(1));
    targets = uncontended, hot
}
criterion_main!(benches);
