//! Unit tests of the pure table for what the store-level conformance suite cannot see:
//! its clock, its change tracking, snapshots and restore.

use std::time::Duration;

use super::*;
use crate::error::Error;
use crate::event::EventType;
use crate::model::{HeldResource, LeaseState, Priority};

fn t(ms: u64) -> Timestamp {
    Timestamp::from_millis(1_000_000 + ms)
}

fn req(n: u128, owner: &str, resources: &[&str], wait: WaitMode) -> AcquireRequest {
    AcquireRequest {
        lease_id: LeaseId::from_u128(n),
        ticket_id: TicketId::from_u128(n),
        owner: Owner::new(owner).unwrap(),
        resources: resources
            .iter()
            .map(|r| ResourceName::new(r).unwrap())
            .collect(),
        priority: Priority::Normal,
        ttl: Some(Duration::from_secs(10)),
        metadata: None,
        wait,
        reentry: Default::default(),
        queue_limits: Default::default(),
    }
}

fn queue(deadline: Timestamp) -> WaitMode {
    WaitMode::Queue {
        deadline: Some(deadline),
        detached: false,
    }
}

#[test]
fn the_table_clock_never_goes_backwards() {
    let mut table = LockTable::new(TableConfig::default());
    table
        .acquire(req(1, "a", &["r1"], WaitMode::Try), t(5000))
        .unwrap();
    let late = table
        .acquire(req(2, "b", &["r2"], WaitMode::Try), t(1000))
        .unwrap();
    assert_eq!(late.lease().unwrap().acquired_at, t(5000));
}

#[test]
fn catching_up_with_now_reports_events_even_when_the_operation_is_refused() {
    let mut table = LockTable::new(TableConfig::default());
    table
        .acquire(req(1, "a", &["r1"], WaitMode::Try), t(0))
        .unwrap();
    table
        .acquire(req(2, "b", &["r2"], WaitMode::Try), t(5000))
        .unwrap();
    table.take_events();
    let applied = table.apply(Op::Acquire(req(3, "c", &["r2"], WaitMode::Try)), t(10_000));
    assert!(matches!(applied.result, Err(Error::Locked { .. })));
    let kinds: Vec<_> = applied.events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventType::LockExpired]);
}

#[test]
fn change_tracking_names_every_touched_record() {
    let mut table = LockTable::new(TableConfig::default());
    table.track_changes();
    table
        .acquire(req(1, "a", &["r1"], WaitMode::Try), t(0))
        .unwrap();
    table
        .acquire(req(2, "b", &["r1"], queue(t(60_000))), t(0))
        .unwrap();
    let c = table.take_changes();
    assert_eq!(c.leases, vec![LeaseId::from_u128(1)]);
    // An attached waiter's ticket is never a record to write: it dies with its connection.
    assert!(c.tickets.is_empty(), "{c:?}");
    assert_eq!(c.fences.len(), 1);
    table.release(LeaseId::from_u128(1), t(1)).unwrap();
    let c = table.take_changes();
    assert!(c.leases.contains(&LeaseId::from_u128(1)) && c.leases.contains(&LeaseId::from_u128(2)));
    assert!(c.tickets.is_empty(), "{c:?}");
    assert!(table.lease_record(&LeaseId::from_u128(1)).is_none());
    assert!(table.take_changes().is_empty());
    // A detached ticket is.
    let detached = WaitMode::Queue {
        deadline: Some(t(60_000)),
        detached: true,
    };
    table.acquire(req(3, "c", &["r1"], detached), t(2)).unwrap();
    assert_eq!(table.take_changes().tickets, vec![TicketId::from_u128(3)]);
    table.release(LeaseId::from_u128(2), t(3)).unwrap();
    assert_eq!(table.take_changes().tickets, vec![TicketId::from_u128(3)]);
}

#[test]
fn snapshot_and_restore_round_trip() {
    let mut table = LockTable::new(TableConfig::default());
    table
        .acquire(req(1, "a", &["r1", "r2"], WaitMode::Try), t(0))
        .unwrap();
    table
        .acquire(req(2, "b", &["r1"], queue(t(60_000))), t(1))
        .unwrap();
    table
        .acquire(req(3, "c", &["r3"], WaitMode::Try), t(2))
        .unwrap();
    table.release(LeaseId::from_u128(3), t(3)).unwrap();
    let snap = table.snapshot();
    let restored = LockTable::restore(TableConfig::default(), snap.clone()).unwrap();
    assert_eq!(restored.snapshot(), snap);
    assert_eq!(restored.last_fencing_token("r3"), 1);
    assert_eq!(restored.next_deadline(), table.next_deadline());
    assert_eq!(
        restored.resource_info(&ResourceName::new("r1").unwrap(), t(4)),
        table.resource_info(&ResourceName::new("r1").unwrap(), t(4))
    );
}

#[test]
fn restore_refuses_a_resource_held_twice() {
    let mut table = LockTable::new(TableConfig::default());
    table
        .acquire(req(1, "a", &["r1"], WaitMode::Try), t(0))
        .unwrap();
    let mut snap = table.snapshot();
    let mut twin = snap.leases[0].clone();
    twin.id = LeaseId::from_u128(9);
    twin.resources = vec![HeldResource {
        resource: ResourceName::new("r1").unwrap(),
        fencing_token: 2,
    }];
    snap.leases.push(twin);
    let err = LockTable::restore(TableConfig::default(), snap)
        .err()
        .unwrap();
    assert!(err.to_string().contains("held by both"), "{err}");
}

#[test]
fn a_three_owner_cycle_is_found_in_order() {
    let mut table = LockTable::new(TableConfig {
        deadlock_prevention: false,
        ..TableConfig::default()
    });
    for (n, o, r) in [(1, "a", "ra"), (2, "b", "rb"), (3, "c", "rc")] {
        table.acquire(req(n, o, &[r], WaitMode::Try), t(0)).unwrap();
    }
    for (n, o, r) in [(4, "a", "rb"), (5, "b", "rc"), (6, "c", "ra")] {
        table
            .acquire(req(n, o, &[r], queue(t(60_000))), t(0))
            .unwrap();
    }
    let cycles = table.find_deadlocks(t(1));
    assert_eq!(cycles.len(), 1);
    let path: Vec<_> = cycles[0]
        .iter()
        .map(|e| (e.waiter.as_str(), e.blocker.as_str()))
        .collect();
    assert_eq!(path, vec![("a", "b"), ("b", "c"), ("c", "a")]);
    let records = table.resolve_deadlocks(ResolutionPolicy::Youngest, t(2));
    assert_eq!(records[0].victim.as_ref().unwrap().as_str(), "c");
    assert!(table.find_deadlocks(t(3)).is_empty());
    assert_eq!(table.ticket_count(), 2);
    let lease = table.get_lease(&LeaseId::from_u128(1), t(3)).unwrap();
    assert_eq!(lease.state, LeaseState::Held);
}

#[test]
fn the_victim_order_of_each_policy() {
    use crate::model::Priority;
    use crate::table::{ResolutionPolicy, VictimFacts};
    let f = |priority, held, youth| VictimFacts {
        priority,
        held,
        youth,
    };
    // (priority, resources held by the owner, enqueue order: larger is younger)
    let cycle = [
        f(Priority::Low, 5, 1),
        f(Priority::High, 0, 2),
        f(Priority::Low, 3, 3),
        f(Priority::Normal, 0, 4),
    ];
    assert_eq!(
        ResolutionPolicy::LowestPriority.victim(&cycle),
        Some(2),
        "lowest, then youngest"
    );
    assert_eq!(ResolutionPolicy::Youngest.victim(&cycle), Some(3));
    assert_eq!(ResolutionPolicy::Oldest.victim(&cycle), Some(0));
    assert_eq!(
        ResolutionPolicy::FewestLocks.victim(&cycle),
        Some(3),
        "fewest, then youngest"
    );
    assert_eq!(ResolutionPolicy::Oldest.victim::<u64>(&[]), None);
}
