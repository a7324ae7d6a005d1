//! The model-based property test: random operation sequences applied to a store and to the pure
//! [`LockTable`] in lockstep, every outcome, event and view compared.
//!
//! The universe is small on purpose (4 owners, 4 resources, queues of at most 3) so that random
//! sequences collide: re-entry, handoff, queue_full, deadlocks, expiry and aging all happen. For
//! stores that persist, a `Reopen` step closes the store and opens it from disk; the model is
//! rebuilt from its own snapshot, so the two must still agree on everything.

use std::sync::Arc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

use crate::clock::{Clock, ManualClock};
use crate::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use crate::store::Store;
use crate::table::{
    AcquireRequest, CancelReason, LeaseFilter, LockTable, Op, ResolutionPolicy, TableConfig,
    WaitMode,
};

use super::{RecordingSink, StoreFactory};

const OWNERS: [&str; 4] = ["o0", "o1", "o2", "o3"];
const RESOURCES: [&str; 4] = ["r0", "r1", "r2", "r3"];

#[derive(Clone, Debug)]
pub enum Step {
    Acquire {
        owner: usize,
        resources: Vec<usize>,
        priority: u8,
        /// 0: 10s, 1: 60s, 2: no expiry.
        ttl: u8,
        /// 0: try, 1: attached 30s, 2: detached 120s.
        wait: u8,
        /// Refuse re-entry: another holder under the same name.
        refuse: bool,
        /// A policy's queue cap on the first resource (1 or 2), as the manager passes it.
        limit: Option<usize>,
    },
    Release(usize),
    Renew(usize, Option<u64>),
    Cancel(usize),
    ForceRelease(usize),
    ExpireDue,
    ResolveDeadlocks(u8),
    Advance(u64),
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0..4usize, prop::collection::vec(0..4usize, 1..3), 0..4u8, 0..3u8, 0..3u8, prop::bool::weighted(0.25), prop::option::weighted(0.25, 1..3usize)).prop_map(
            |(owner, resources, priority, ttl, wait, refuse, limit)| Step::Acquire { owner, resources, priority, ttl, wait, refuse, limit }
        ),
        3 => (0..64usize).prop_map(Step::Release),
        1 => (0..64usize, prop::option::of(1..90u64)).prop_map(|(i, t)| Step::Renew(i, t)),
        1 => (0..64usize).prop_map(Step::Cancel),
        1 => (0..4usize).prop_map(Step::ForceRelease),
        1 => Just(Step::ExpireDue),
        1 => (0..4u8).prop_map(Step::ResolveDeadlocks),
        3 => (0..45u64).prop_map(Step::Advance),
        1 => Just(Step::Reopen),
    ]
}

fn config() -> impl Strategy<Value = TableConfig> {
    (
        any::<bool>(),
        0..4u8,
        prop_oneof![Just(0u64), Just(20), Just(60)],
    )
        .prop_map(|(prevention, boost, aging)| TableConfig {
            max_timeout: Duration::from_secs(100),
            max_queue_wait: Duration::from_secs(200),
            allow_no_ttl: true,
            max_queue_size: 3,
            starvation_threshold: Duration::from_secs(aging),
            max_priority_boost: boost,
            deadlock_prevention: prevention,
        })
}

/// Runs `cases` random sequences against stores from `factory`. Panics with the shrunk failing
/// sequence on the first disagreement.
pub fn run(factory: Arc<dyn StoreFactory>, cases: u32) {
    run_with_resources(factory, cases, RESOURCES);
}

/// The same with other names for the four resources (a sharded store: names that hash to one
/// shard, away from the default one).
pub fn run_with_resources(factory: Arc<dyn StoreFactory>, cases: u32, names: [&'static str; 4]) {
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let result = runner.run(
        &(config(), prop::collection::vec(step(), 1..80)),
        |(config, steps)| {
            rt.block_on(check_named(&*factory, config, steps, names));
            Ok(())
        },
    );
    if let Err(e) = result {
        panic!("the store and the model disagree: {e}");
    }
}

struct Run {
    store: Arc<dyn Store>,
    sink: Arc<RecordingSink>,
    model: LockTable,
    clock: Arc<ManualClock>,
    leases: Vec<LeaseId>,
    tickets: Vec<TicketId>,
    next: u128,
    names: [&'static str; 4],
}

async fn attach(store: &Arc<dyn Store>) -> Arc<RecordingSink> {
    let sink = Arc::new(RecordingSink::default());
    store.attach_sink(sink.clone()).unwrap();
    sink
}

pub async fn check(factory: &dyn StoreFactory, config: TableConfig, steps: Vec<Step>) {
    check_named(factory, config, steps, RESOURCES).await
}

async fn check_named(
    factory: &dyn StoreFactory,
    config: TableConfig,
    steps: Vec<Step>,
    names: [&'static str; 4],
) {
    let clock = ManualClock::at_epoch_2026();
    let store = factory.open(config.clone(), clock.clone()).await;
    let sink = attach(&store).await;
    let mut run = Run {
        store,
        sink,
        model: LockTable::new(config.clone()),
        clock,
        leases: Vec::new(),
        tickets: Vec::new(),
        next: 1,
        names,
    };
    for (i, step) in steps.into_iter().enumerate() {
        let op = match step {
            Step::Advance(s) => {
                run.clock.advance(Duration::from_secs(s));
                None
            }
            Step::Reopen if factory.persists() => {
                // Hand over the only handle, so that the store really closes.
                let placeholder: Arc<dyn Store> = Arc::new(crate::store::InMemoryStore::new(
                    config.clone(),
                    run.clock.clone(),
                ));
                let store = std::mem::replace(&mut run.store, placeholder);
                run.store = factory
                    .reopen(store, config.clone(), run.clock.clone())
                    .await;
                run.sink = attach(&run.store).await;
                run.model = LockTable::restore(config.clone(), run.model.snapshot())
                    .expect("model restores");
                if factory.reopen_drops_attached_tickets() {
                    run.model.drop_attached_tickets(run.clock.now());
                    // The store never wrote attached tickets: they are simply not there after
                    // the reopen, where the model, which had them, cancels them.
                    let expected: Vec<_> = run
                        .model
                        .take_events()
                        .into_iter()
                        .filter(|e| {
                            !(e.kind == crate::event::EventType::QueueCancelled
                                && e.reason.as_deref() == Some("client_gone"))
                        })
                        .collect();
                    assert_eq!(run.sink.take(), expected, "step {i}: events of the reopen");
                }
                None
            }
            Step::Reopen => None,
            step => Some(run.op(step)),
        };
        if let Some(op) = op {
            let now = run.clock.now();
            let expected = run.model.apply(op.clone(), now);
            let got = run.store.apply(op.clone()).await;
            assert_eq!(got, expected.result, "step {i}: outcome of {op:?}");
            assert_eq!(
                run.sink.take(),
                expected.events,
                "step {i}: events of {op:?}"
            );
        }
        run.compare_views(i).await;
    }
}

impl Run {
    fn op(&mut self, step: Step) -> Op {
        fn pick<T: Copy>(ids: &[T], i: usize) -> Option<T> {
            ids.get(i % ids.len().max(1)).copied()
        }
        match step {
            Step::Acquire {
                owner,
                resources,
                priority,
                ttl,
                wait,
                refuse,
                limit,
            } => {
                let id = self.next;
                self.next += 1;
                let (lease_id, ticket_id) = (LeaseId::from_u128(id), TicketId::from_u128(id));
                self.leases.push(lease_id);
                self.tickets.push(ticket_id);
                let now = self.clock.now();
                Op::Acquire(AcquireRequest {
                    lease_id,
                    ticket_id,
                    owner: Owner::new(OWNERS[owner]).unwrap(),
                    resources: resources
                        .iter()
                        .map(|r| ResourceName::new(self.names[*r]).unwrap())
                        .collect(),
                    priority: Priority::from_level_saturating(priority),
                    ttl: match ttl {
                        0 => Some(Duration::from_secs(10)),
                        1 => Some(Duration::from_secs(60)),
                        _ => None,
                    },
                    metadata: None,
                    wait: match wait {
                        0 => WaitMode::Try,
                        1 => WaitMode::Queue {
                            deadline: Some(now.plus(Duration::from_secs(30))),
                            detached: false,
                        },
                        _ => WaitMode::Queue {
                            deadline: Some(now.plus(Duration::from_secs(120))),
                            detached: true,
                        },
                    },
                    reentry: if refuse {
                        crate::model::Reentry::Refuse
                    } else {
                        crate::model::Reentry::Allow
                    },
                    queue_limits: limit
                        .map(|n| (ResourceName::new(self.names[resources[0]]).unwrap(), n))
                        .into_iter()
                        .collect(),
                })
            }
            Step::Release(i) => Op::Release(pick(&self.leases, i).unwrap_or(LeaseId::from_u128(0))),
            Step::Renew(i, ttl) => Op::Renew {
                lease_id: pick(&self.leases, i).unwrap_or(LeaseId::from_u128(0)),
                ttl: ttl.map(Duration::from_secs),
            },
            Step::Cancel(i) => Op::Cancel {
                ticket_id: pick(&self.tickets, i).unwrap_or(TicketId::from_u128(0)),
                reason: CancelReason::Cancelled,
            },
            Step::ForceRelease(r) => Op::ForceRelease {
                resource: ResourceName::new(self.names[r]).unwrap(),
                reason: "model".into(),
            },
            Step::ExpireDue => Op::ExpireDue,
            Step::ResolveDeadlocks(p) => Op::ResolveDeadlocks(match p {
                0 => ResolutionPolicy::LowestPriority,
                1 => ResolutionPolicy::Youngest,
                2 => ResolutionPolicy::Oldest,
                _ => ResolutionPolicy::FewestLocks,
            }),
            Step::Advance(_) | Step::Reopen => unreachable!("handled by the caller"),
        }
    }

    async fn compare_views(&self, i: usize) {
        let now = self.clock.now();
        let s = &self.store;
        assert_eq!(
            s.list(LeaseFilter::default()).await.unwrap(),
            self.model.list(&LeaseFilter::default(), now),
            "step {i}: list"
        );
        assert_eq!(
            s.queues().await.unwrap(),
            self.model.queues(now),
            "step {i}: queues"
        );
        assert_eq!(
            s.next_deadline().await.unwrap(),
            self.model.next_deadline(),
            "step {i}: next deadline"
        );
        assert_eq!(
            s.find_deadlocks().await.unwrap(),
            self.model.find_deadlocks(now),
            "step {i}: deadlocks"
        );
        for r in self.names {
            let r = ResourceName::new(r).unwrap();
            assert_eq!(
                s.resource(r.clone()).await.unwrap(),
                self.model.resource_info(&r, now),
                "step {i}: {r}"
            );
        }
        for t in &self.tickets {
            assert_eq!(
                s.get_ticket(*t).await.unwrap(),
                self.model.get_ticket(t, now),
                "step {i}: ticket"
            );
        }
        // The invariant behind everything: no resource is held by two leases.
        let mut held = std::collections::HashSet::new();
        for l in self.model.list(&LeaseFilter::default(), now) {
            for h in &l.resources {
                assert!(
                    held.insert(h.resource.clone()),
                    "step {i}: {} held twice",
                    h.resource
                );
            }
        }
    }
}
