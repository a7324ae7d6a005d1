//! The Redis store spread over several shards (`redis.shards`), on the real 3-master Cluster.
//!
//! - Inside one shard the semantics are the table's exactly: the model-based property test runs
//!   with four resources that share a hash tag (so they live in one shard, not shard 0, and
//!   every look-up by a test id starts at the wrong shard).
//! - Across shards (docs/redis.md, "Leases across shards"): all or none, nothing held while
//!   waiting, nothing left behind by a failed round, a vanished caller or a dead server, and
//!   deadlocks through several shards found and resolved.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use elock_core::clock::{Clock, ManualClock};
use elock_core::error::Error;
use elock_core::event::EventType;
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::Store;
use elock_core::table::{
    AcquireRequest, Acquired, LeaseFilter, ResolutionPolicy, TableConfig, WaitMode,
};
use elock_core::testkit::{model_check, RecordingSink};
mod support;

use elock_redis::testing::config_for;
use elock_redis::{RedisStore, ShardMap, TimeSource, SWEEP_GRACE};
use support::RedisFactory;

const SHARDS: usize = 8;

#[test]
fn model_check_inside_one_shard_of_eight() {
    let names = ["{g}r0", "{g}r1", "{g}r2", "{g}r3"];
    let map = ShardMap::new(SHARDS);
    assert_ne!(
        map.of_resource(names[0]),
        0,
        "the test wants a shard other than 0"
    );
    model_check::run_with_resources(
        Arc::new(RedisFactory::cluster().with_shards(SHARDS)),
        40,
        names,
    );
}

struct Fixture {
    store: RedisStore,
    clock: Arc<ManualClock>,
    sink: Arc<RecordingSink>,
}

async fn fixture(table: TableConfig) -> Fixture {
    let mut config = tokio::task::spawn_blocking(|| config_for(true))
        .await
        .unwrap();
    config.shards = SHARDS;
    let clock = ManualClock::at_epoch_2026();
    let store = RedisStore::open(config, table, TimeSource::Clock(clock.clone()))
        .await
        .unwrap();
    let sink = Arc::new(RecordingSink::default());
    store.attach_sink(sink.clone()).unwrap();
    Fixture { store, clock, sink }
}

/// `n` resource names, each in a different shard, in ascending shard order.
fn spread(n: usize) -> Vec<ResourceName> {
    let map = ShardMap::new(SHARDS);
    let mut by_shard = BTreeMap::new();
    for i in 0.. {
        let name = format!("res-{i}");
        by_shard.entry(map.of_resource(&name)).or_insert(name);
        if by_shard.len() == n {
            break;
        }
    }
    by_shard
        .into_values()
        .map(|n| ResourceName::new(&n).unwrap())
        .collect()
}

impl Fixture {
    fn req(&self, owner: &str, resources: &[ResourceName], wait: WaitMode) -> AcquireRequest {
        let (lease_id, ticket_id) = self.store.new_ids(resources);
        AcquireRequest {
            lease_id,
            ticket_id,
            owner: Owner::new(owner).unwrap(),
            resources: resources.to_vec(),
            priority: Priority::Normal,
            ttl: Some(Duration::from_secs(60)),
            metadata: None,
            wait,
            reentry: Default::default(),
            queue_limits: Default::default(),
        }
    }

    fn wait_for(&self, secs: u64) -> WaitMode {
        WaitMode::Queue {
            deadline: Some(self.clock.now().plus(Duration::from_secs(secs))),
            detached: false,
        }
    }

    async fn holder(&self, r: &ResourceName) -> Option<LeaseId> {
        self.store
            .resource(r.clone())
            .await
            .unwrap()
            .holder
            .map(|l| l.id)
    }

    async fn granted(&self, req: AcquireRequest) -> elock_core::model::Lease {
        match self.store.acquire(req).await.unwrap() {
            Acquired::Granted { lease, .. } => lease,
            other => panic!("expected a grant, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_request_across_shards_is_all_or_none() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(3);
    let lease = f
        .granted(f.req(
            "alice",
            &[r[2].clone(), r[0].clone(), r[1].clone()],
            WaitMode::Try,
        ))
        .await;
    let names: Vec<&str> = lease
        .resources
        .iter()
        .map(|h| h.resource.as_str())
        .collect();
    assert_eq!(
        names,
        [r[2].as_str(), r[0].as_str(), r[1].as_str()],
        "request order"
    );
    for x in &r {
        assert_eq!(f.holder(x).await, Some(lease.id));
    }
    assert_eq!(
        f.store.get_lease(lease.id).await.unwrap(),
        Some(lease.clone())
    );
    assert_eq!(
        f.store.list(LeaseFilter::default()).await.unwrap(),
        vec![lease.clone()]
    );

    // bob wants r0 and r1 while alice holds them: refused, and nothing of his is left.
    let err = f
        .store
        .acquire(f.req("bob", &[r[0].clone(), r[1].clone()], WaitMode::Try))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");

    // Renewal and release act on every part.
    let renewed = f
        .store
        .renew(lease.id, Some(Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(renewed.ttl, Some(Duration::from_secs(90)));
    let released = f.store.release(lease.id).await.unwrap();
    assert_eq!(released.resources.len(), 3);
    for x in &r {
        assert_eq!(f.holder(x).await, None);
    }
    assert!(f
        .store
        .list(LeaseFilter::default())
        .await
        .unwrap()
        .is_empty());

    // A refusal at a later shard gives back the parts taken at earlier ones.
    let blocker = f
        .granted(f.req("carol", &[r[2].clone()], WaitMode::Try))
        .await;
    let err = f
        .store
        .acquire(f.req(
            "bob",
            &[r[0].clone(), r[1].clone(), r[2].clone()],
            WaitMode::Try,
        ))
        .await
        .unwrap_err();
    match err {
        Error::Locked { resource, holder } => {
            assert_eq!(resource, r[2]);
            assert_eq!(holder.unwrap().id, blocker.id);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        f.holder(&r[0]).await,
        None,
        "no partial hold after a refusal"
    );
    assert_eq!(
        f.holder(&r[1]).await,
        None,
        "no partial hold after a refusal"
    );
}

#[tokio::test]
async fn fencing_tokens_increase_per_resource_across_shards() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let mut last: HashMap<String, u64> = HashMap::new();
    for i in 0..5 {
        let res = if i % 2 == 0 {
            r.clone()
        } else {
            vec![r[1].clone()]
        };
        let lease = f.granted(f.req("alice", &res, WaitMode::Try)).await;
        for h in &lease.resources {
            let before = last
                .insert(h.resource.to_string(), h.fencing_token)
                .unwrap_or(0);
            assert!(h.fencing_token > before, "{h:?} after {before}");
        }
        f.store.release(lease.id).await.unwrap();
    }
}

#[tokio::test]
async fn a_waiting_request_across_shards_is_granted_when_the_last_blocker_goes() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let a = f
        .granted(f.req("alice", &[r[0].clone()], WaitMode::Try))
        .await;
    let b = f
        .granted(f.req("carol", &[r[1].clone()], WaitMode::Try))
        .await;
    let store = f.store.clone();
    let req = f.req("bob", &r, f.wait_for(60));
    let waiting = tokio::spawn(async move { store.acquire(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        f.holder(&r[0]).await,
        Some(a.id),
        "nothing taken while waiting"
    );
    f.store.release(a.id).await.unwrap();
    // The round this release triggers takes r0 for a moment, is refused r1 and gives r0 back.
    let start = Instant::now();
    while f.holder(&r[0]).await.is_some() {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "r0 held while waiting for r1"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let released = Instant::now();
    f.store.release(b.id).await.unwrap();
    let got = waiting.await.unwrap().unwrap();
    let waited = released.elapsed();
    let lease = match got {
        Acquired::Granted { lease, .. } => lease,
        other => panic!("{other:?}"),
    };
    assert_eq!(lease.owner.as_str(), "bob");
    assert!(
        waited < Duration::from_millis(500),
        "woken by the event, not the re-check: {waited:?}"
    );
    for x in &r {
        assert_eq!(f.holder(x).await, Some(lease.id));
    }
}

#[tokio::test]
async fn a_wait_across_shards_ends_at_its_deadline_holding_nothing() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    f.granted(f.req("carol", &[r[1].clone()], WaitMode::Try))
        .await;
    let store = f.store.clone();
    let req = f.req("bob", &r, f.wait_for(30));
    let waiting = tokio::spawn(async move { store.acquire(req).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    f.clock.advance(Duration::from_secs(31));
    let err = tokio::time::timeout(Duration::from_secs(3), waiting)
        .await
        .expect("the wait re-checks its deadline at least every second")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Error::WaitTimeout { .. }), "{err:?}");
    assert_eq!(f.holder(&r[0]).await, None);
}

#[tokio::test]
async fn a_caller_that_goes_away_leaves_nothing_held() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let b = f
        .granted(f.req("carol", &[r[1].clone()], WaitMode::Try))
        .await;
    let store = f.store.clone();
    let req = f.req("bob", &r, f.wait_for(60));
    let waiting = tokio::spawn(async move { store.acquire(req).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    waiting.abort();
    let _ = waiting.await;
    // The round the release triggers grants bob, finds nobody to tell and gives it back.
    f.store.release(b.id).await.unwrap();
    let start = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        if f.store
            .list(LeaseFilter::default())
            .await
            .unwrap()
            .is_empty()
            && f.holder(&r[0]).await.is_none()
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "bob's lease was not given back"
        );
    }
}

#[tokio::test]
async fn a_renewal_that_finds_a_part_gone_gives_back_the_rest_and_fails() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let lease = f.granted(f.req("alice", &r, WaitMode::Try)).await;
    let map = f.store.shard_map();
    f.store
        .release_one_part_for_tests(lease.id, map.of_resource(r[1].as_str()))
        .await
        .unwrap();
    let err = f.store.renew(lease.id, None).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    assert_eq!(f.holder(&r[0]).await, None, "the rest was given back");
}

/// Another server (here: a second store on the same data) hears the events of every shard,
/// whose channels live in different slots and on different masters.
#[tokio::test]
async fn events_of_every_shard_reach_the_other_servers() {
    let f = fixture(TableConfig::default()).await;
    let other = RedisStore::open(
        f.store.config().clone(),
        TableConfig::default(),
        TimeSource::Clock(f.clock.clone()),
    )
    .await
    .unwrap();
    let heard = Arc::new(RecordingSink::default());
    other.attach_sink(heard.clone()).unwrap();
    // Give the listener time to subscribe to all eight channels.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let names = spread(SHARDS);
    for x in &names {
        f.granted(f.req("alice", std::slice::from_ref(x), WaitMode::Try))
            .await;
    }
    let start = Instant::now();
    let mut got = std::collections::HashSet::new();
    loop {
        for e in heard.take() {
            got.extend(e.resources.iter().map(|r| r.to_string()));
        }
        let missing: Vec<&ResourceName> =
            names.iter().filter(|n| !got.contains(n.as_str())).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "no event heard from the shards of {missing:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn detached_tickets_across_shards_are_refused_naming_the_resources() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let req = f.req(
        "bob",
        &r,
        WaitMode::Queue {
            deadline: Some(f.clock.now().plus(Duration::from_secs(60))),
            detached: true,
        },
    );
    let err = f.store.acquire(req).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::InvalidRequest { .. }), "{err:?}");
    assert!(
        text.contains(r[0].as_str()) && text.contains("hash tag"),
        "{text}"
    );
}

#[tokio::test]
async fn the_sweep_releases_a_part_whose_server_died_mid_round() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    let map = f.store.shard_map();
    let shards: Vec<usize> = r.iter().map(|x| map.of_resource(x.as_str())).collect();
    let req = f.req("bob", &r, WaitMode::Try);
    f.store
        .take_one_part_for_tests(&req, shards[0], &shards)
        .await
        .unwrap();
    assert_eq!(
        f.holder(&r[0]).await,
        Some(req.lease_id),
        "the orphan holds r0"
    );
    // Within the grace it is left alone (a round may still be under way).
    f.store.expire_due().await.unwrap();
    assert_eq!(f.holder(&r[0]).await, Some(req.lease_id));
    f.clock.advance(SWEEP_GRACE + Duration::from_secs(1));
    f.store.expire_due().await.unwrap();
    assert_eq!(f.holder(&r[0]).await, None, "swept");
    // A complete lease of the same age is not touched.
    let whole = f.granted(f.req("alice", &r, WaitMode::Try)).await;
    f.clock.advance(SWEEP_GRACE + Duration::from_secs(1));
    f.store.expire_due().await.unwrap();
    assert_eq!(f.holder(&r[1]).await, Some(whole.id));
}

#[tokio::test]
async fn ids_made_by_the_store_point_to_their_shard() {
    let f = fixture(TableConfig::default()).await;
    let map = f.store.shard_map();
    for x in spread(SHARDS) {
        let (l, t) = f.store.new_ids(std::slice::from_ref(&x));
        assert_eq!(map.home_of(l.as_bytes()), map.of_resource(x.as_str()));
        assert_eq!(map.home_of(t.as_bytes()), map.of_resource(x.as_str()));
    }
    // Ids made elsewhere (here: every byte but the last zero) are found by asking every shard.
    let x = spread(SHARDS).pop().unwrap();
    let mut req = f.req("alice", std::slice::from_ref(&x), WaitMode::Try);
    req.lease_id = LeaseId::from_u128(77);
    req.ticket_id = TicketId::from_u128(77);
    let lease = f.granted(req).await;
    assert_eq!(
        f.store.get_lease(lease.id).await.unwrap().unwrap().id,
        lease.id
    );
    f.store.release(lease.id).await.unwrap();
}

#[tokio::test]
async fn a_deadlock_through_two_shards_is_found_and_resolved() {
    let f = fixture(TableConfig::default()).await;
    let r = spread(2);
    f.granted(f.req("alice", &[r[0].clone()], WaitMode::Try))
        .await;
    f.granted(f.req("bob", &[r[1].clone()], WaitMode::Try))
        .await;
    let detached = |secs| WaitMode::Queue {
        deadline: Some(f.clock.now().plus(Duration::from_secs(secs))),
        detached: true,
    };
    // Each shard sees only half of the cycle, so prevention lets both in.
    f.store
        .acquire(f.req("alice", &[r[1].clone()], detached(60)))
        .await
        .unwrap();
    f.clock.advance(Duration::from_secs(1));
    f.store
        .acquire(f.req("bob", &[r[0].clone()], detached(60)))
        .await
        .unwrap();
    let cycles = f.store.find_deadlocks().await.unwrap();
    assert_eq!(cycles.len(), 1, "{cycles:?}");
    let waiters: Vec<&str> = cycles[0].iter().map(|e| e.waiter.as_str()).collect();
    assert_eq!(waiters, ["alice", "bob"]);
    f.sink.take();
    let records = f
        .store
        .resolve_deadlocks(ResolutionPolicy::Youngest)
        .await
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].victim.as_ref().unwrap().as_str(),
        "bob",
        "the youngest ticket"
    );
    let kinds: Vec<EventType> = f.sink.take().iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        [EventType::DeadlockDetected, EventType::QueueCancelled]
    );
    assert!(f.store.find_deadlocks().await.unwrap().is_empty());
}

#[derive(Clone, Debug)]
enum Step {
    /// owner, resources (indices), all shards or one
    Try(usize, Vec<usize>),
    Release(usize),
    Force(usize),
    Renew(usize),
    Advance(u64),
    Expire,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (0..3usize, prop::collection::vec(0..4usize, 1..4)).prop_map(|(o, r)| Step::Try(o, r)),
        3 => (0..32usize).prop_map(Step::Release),
        1 => (0..4usize).prop_map(Step::Force),
        1 => (0..32usize).prop_map(Step::Renew),
        2 => (0..40u64).prop_map(Step::Advance),
        1 => Just(Step::Expire),
    ]
}

/// Try-locks, releases, renewals, force-releases and expiry of leases across shards, checked
/// against the simplest model: a resource is held by at most one lease; a try-lock is granted
/// exactly when everything it names is free (or re-entered whole); a lease holds all its
/// resources or none; fencing tokens only go up.
#[test]
fn leases_across_shards_keep_all_or_none_under_random_operations() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&prop::collection::vec(step(), 1..40), |steps| {
            rt.block_on(random_run(steps));
            Ok(())
        })
        .unwrap();
}

async fn random_run(steps: Vec<Step>) {
    let f = fixture(TableConfig::default()).await;
    let names = spread(4);
    let owners = ["o0", "o1", "o2"];
    // model: resource -> (lease, owner, expires)
    let mut held: HashMap<usize, (LeaseId, usize)> = HashMap::new();
    let mut leases: Vec<(LeaseId, Vec<usize>, u64)> = Vec::new(); // id, resources, expiry (ms)
    let mut tokens: HashMap<usize, u64> = HashMap::new();
    let mut ids: Vec<LeaseId> = Vec::new();
    for (i, s) in steps.into_iter().enumerate() {
        let now = f.clock.now().as_millis();
        // Expiry happens whenever the store catches up with the time; mirror it first.
        let due: Vec<LeaseId> = leases.iter().filter(|l| l.2 <= now).map(|l| l.0).collect();
        for id in due {
            held.retain(|_, (l, _)| *l != id);
            leases.retain(|l| l.0 != id);
        }
        match s {
            Step::Try(o, rs) => {
                let mut rs_dedup: Vec<usize> = Vec::new();
                for r in rs {
                    if !rs_dedup.contains(&r) {
                        rs_dedup.push(r);
                    }
                }
                let res: Vec<ResourceName> = rs_dedup.iter().map(|r| names[*r].clone()).collect();
                let req = f.req(owners[o], &res, WaitMode::Try);
                let got = f.store.acquire(req.clone()).await;
                let holders: Vec<Option<(LeaseId, usize)>> =
                    rs_dedup.iter().map(|r| held.get(r).copied()).collect();
                let free = holders.iter().all(Option::is_none);
                let whole_reentry = holders
                    .iter()
                    .all(|h| matches!(h, Some((_, ho)) if *ho == o))
                    && holders
                        .windows(2)
                        .all(|w| w[0].map(|x| x.0) == w[1].map(|x| x.0))
                    && leases
                        .iter()
                        .find(|l| Some(l.0) == holders[0].map(|x| x.0))
                        .is_some_and(|l| rs_dedup.iter().all(|r| l.1.contains(r)));
                match got {
                    Ok(Acquired::Granted { lease, reentrant }) => {
                        assert!(
                            free || (reentrant && whole_reentry),
                            "step {i}: granted {lease:?} over {holders:?}"
                        );
                        if !reentrant {
                            for h in &lease.resources {
                                let r = names.iter().position(|n| *n == h.resource).unwrap();
                                let before = tokens.insert(r, h.fencing_token).unwrap_or(0);
                                assert!(h.fencing_token > before, "step {i}: token went back");
                                held.insert(r, (lease.id, o));
                            }
                            leases.push((lease.id, rs_dedup.clone(), now + 60_000));
                            ids.push(lease.id);
                        }
                    }
                    Ok(other) => panic!("step {i}: {other:?}"),
                    Err(Error::Locked { .. }) => {
                        assert!(!free && !whole_reentry, "step {i}: refused although free");
                    }
                    Err(e) => panic!("step {i}: {e:?}"),
                }
            }
            Step::Release(k) | Step::Renew(k) if ids.is_empty() => {
                let _ = k;
            }
            Step::Release(k) => {
                let id = ids[k % ids.len()];
                let known = leases.iter().any(|l| l.0 == id);
                let got = f.store.release(id).await;
                assert_eq!(got.is_ok(), known, "step {i}: release {got:?}");
                held.retain(|_, (l, _)| *l != id);
                leases.retain(|l| l.0 != id);
            }
            Step::Renew(k) => {
                let id = ids[k % ids.len()];
                let known = leases.iter().any(|l| l.0 == id);
                let got = f.store.renew(id, None).await;
                assert_eq!(got.is_ok(), known, "step {i}: renew {got:?}");
                if let Some(l) = leases.iter_mut().find(|l| l.0 == id) {
                    l.2 = now + 60_000;
                }
            }
            Step::Force(r) => {
                let got = f.store.force_release(names[r].clone(), "test".into()).await;
                match held.get(&r).copied() {
                    Some((id, _)) => {
                        assert_eq!(got.unwrap().id, id, "step {i}");
                        held.retain(|_, (l, _)| *l != id);
                        leases.retain(|l| l.0 != id);
                    }
                    None => assert!(got.is_err(), "step {i}: {got:?}"),
                }
            }
            Step::Advance(s) => f.clock.advance(Duration::from_secs(s)),
            Step::Expire => {
                f.store.expire_due().await.unwrap();
            }
        }
        // The views agree with the model: every resource's holder, and every lease whole.
        let now = f.clock.now().as_millis();
        for (r, name) in names.iter().enumerate() {
            let expect = held
                .get(&r)
                .map(|(l, _)| *l)
                .filter(|l| leases.iter().any(|x| x.0 == *l && x.2 > now));
            let info = f.store.resource(name.clone()).await.unwrap();
            let got = info
                .holder
                .filter(|l| !l.is_due(f.clock.now()))
                .map(|l| l.id);
            assert_eq!(got, expect, "step {i}: holder of {name}");
        }
        for l in f.store.list(LeaseFilter::default()).await.unwrap() {
            let model = leases.iter().find(|x| x.0 == l.id);
            let Some(model) = model else {
                assert!(l.is_due(f.clock.now()), "step {i}: unknown lease {l:?}");
                continue;
            };
            let mut got: Vec<usize> = l
                .resources
                .iter()
                .map(|h| names.iter().position(|n| *n == h.resource).unwrap())
                .collect();
            got.sort_unstable();
            let mut want = model.1.clone();
            want.sort_unstable();
            assert_eq!(got, want, "step {i}: lease {} is not whole", l.id);
        }
    }
}
