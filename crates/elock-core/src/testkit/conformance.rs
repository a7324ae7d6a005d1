//! The conformance suite: one scenario for every rule of the semantics (docs/engine.md), written once and run
//! against every store (in-memory, embedded durable, and the Redis stores of their own crate).
//!
//! Each scenario takes a [`StoreFactory`], builds a [`Harness`] with a hand-moved clock, and
//! checks outcomes, state and events. `conformance_tests!(factory)` makes one test per scenario.

use std::time::Duration;

use serde_json::json;

use crate::error::Error;
use crate::event::EventType;
use crate::model::{Lease, LeaseState, Priority, TicketView};
use crate::table::{
    Acquired, CancelReason, LeaseFilter, Resolution, ResolutionPolicy, StateFilter, TableConfig,
};

use super::harness::{name, owner};
use super::{Harness, StoreFactory};

const SEC: Duration = Duration::from_secs(1);

fn granted(a: Acquired) -> Lease {
    match a {
        Acquired::Granted { lease, .. } => lease,
        other => panic!("expected a grant, got {other:?}"),
    }
}

fn queued(a: Acquired) -> TicketView {
    match a {
        Acquired::Queued { ticket } => ticket,
        other => panic!("expected a ticket, got {other:?}"),
    }
}

fn no_prevention() -> TableConfig {
    TableConfig {
        deadlock_prevention: false,
        ..TableConfig::default()
    }
}

async fn holder(h: &Harness, r: &str) -> Option<String> {
    h.store
        .resource(name(r))
        .await
        .unwrap()
        .holder
        .map(|l| l.owner.to_string())
}

/// Try-lock on a free resource: granted at once, token 1, `lock.acquired`.
pub async fn try_lock_grants_a_free_resource(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let lease = granted(h.acquire(h.req("alice", &["r1"])).await.unwrap());
    assert_eq!(lease.owner.as_str(), "alice");
    assert_eq!(lease.state, LeaseState::Held);
    assert_eq!(lease.fencing_token("r1"), Some(1));
    assert_eq!(lease.acquired_at, h.now());
    assert_eq!(lease.expires_at, Some(h.later(60 * SEC)));
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::LockAcquired);
    assert_eq!(events[0].fencing_token, Some(1));
    assert_eq!(events[0].lease_id, Some(lease.id));
    assert_eq!(h.store.get_lease(lease.id).await.unwrap(), Some(lease));
}

/// Try-lock on a held resource: `locked`, carrying the holder's lease and metadata.
pub async fn try_lock_refuses_a_held_resource_naming_the_holder(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(
        h.acquire(h.req("acme/infra#42", &["r1"]).metadata(json!({"pr": 42})))
            .await
            .unwrap(),
    );
    match h.acquire(h.req("bob", &["r1"])).await {
        Err(Error::Locked { resource, holder }) => {
            assert_eq!(resource.as_str(), "r1");
            let holder = holder.expect("the holder's lease");
            assert_eq!(holder.id, a.id);
            assert_eq!(holder.metadata.unwrap().get("pr"), Some(&json!(42)));
        }
        other => panic!("expected locked, got {other:?}"),
    }
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("acme/infra#42"));
}

/// Re-entry: the same owner gets its lease back (`reentrant`), nothing counted, one release frees.
pub async fn reentry_returns_the_same_lease_and_one_release_frees_it(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(h.acquire(h.req("alice", &["r1", "r2"])).await.unwrap());
    h.events();
    for resources in [&["r1", "r2"][..], &["r2"], &["r1"]] {
        match h.acquire(h.req("alice", resources)).await.unwrap() {
            Acquired::Granted { lease, reentrant } => {
                assert!(reentrant);
                assert_eq!(lease.id, a.id);
                assert_eq!(lease.fencing_token("r1"), Some(1));
            }
            other => panic!("expected re-entry, got {other:?}"),
        }
    }
    assert!(h.events().is_empty(), "re-entry changes nothing");
    // Asking for more than one lease holds is not re-entry.
    assert!(matches!(
        h.acquire(h.req("alice", &["r1", "r3"])).await,
        Err(Error::Locked { .. })
    ));
    h.store.release(a.id).await.unwrap();
    assert_eq!(holder(&h, "r1").await, None);
    assert_eq!(holder(&h, "r2").await, None);
}

/// Re-entry refused: a request of the same owner is another holder. Tried, it is `locked`;
/// waiting, it queues behind its own name without a deadlock, neither at enqueue nor by the
/// detector, and is granted when the first holder releases; each holder's release is its own.
pub async fn refused_reentry_makes_each_request_its_own_holder(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let deadline = h.later(60 * SEC);
    let first = granted(
        h.acquire(h.req("acme/infra#42", &["r1"]).refuse_reentry())
            .await
            .unwrap(),
    );
    match h
        .acquire(h.req("acme/infra#42", &["r1"]).refuse_reentry())
        .await
    {
        Err(Error::Locked { holder, .. }) => assert_eq!(holder.unwrap().id, first.id),
        other => panic!("expected locked, got {other:?}"),
    }
    let ticket = queued(
        h.acquire(
            h.req("acme/infra#42", &["r1"])
                .refuse_reentry()
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    assert!(h.store.find_deadlocks().await.unwrap().is_empty());
    // Allowing re-entry, the same owner still gets the first holder's lease.
    match h.acquire(h.req("acme/infra#42", &["r1"])).await.unwrap() {
        Acquired::Granted { lease, reentrant } => {
            assert!(reentrant);
            assert_eq!(lease.id, first.id);
        }
        other => panic!("expected re-entry, got {other:?}"),
    }
    h.store.release(first.id).await.unwrap();
    let second = h.store.get_lease(ticket.lease_id.unwrap()).await.unwrap();
    let second = second.expect("the waiter is granted when the first holder releases");
    assert_eq!(second.fencing_token("r1"), Some(2));
    h.store.release(second.id).await.unwrap();
    assert_eq!(holder(&h, "r1").await, None);
}

/// Release: the lease comes back `released`; a second release and a look-up find nothing.
pub async fn release_frees_and_a_released_lease_is_gone(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(h.acquire(h.req("alice", &["r1"])).await.unwrap());
    let released = h.store.release(a.id).await.unwrap();
    assert_eq!(released.state, LeaseState::Released);
    assert!(matches!(
        h.store.release(a.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(h.store.get_lease(a.id).await.unwrap(), None);
    let kinds = h.kinds();
    assert_eq!(
        kinds,
        vec![EventType::LockAcquired, EventType::LockReleased]
    );
    let b = granted(h.acquire(h.req("bob", &["r1"])).await.unwrap());
    assert_eq!(b.fencing_token("r1"), Some(2));
}

/// All or none: a refused multi-resource request holds nothing; a queued one is granted whole.
pub async fn multi_resource_requests_are_all_or_none(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(h.acquire(h.req("alice", &["r2"])).await.unwrap());
    assert!(matches!(
        h.acquire(h.req("bob", &["r1", "r2"])).await,
        Err(Error::Locked { .. })
    ));
    assert_eq!(
        holder(&h, "r1").await,
        None,
        "a refused request holds nothing"
    );
    let t = queued(
        h.acquire(h.req("bob", &["r1", "r2"]).wait_until(h.later(60 * SEC)))
            .await
            .unwrap(),
    );
    assert_eq!(
        holder(&h, "r1").await,
        None,
        "a queued request holds nothing"
    );
    assert_eq!(t.position[&name("r1")], 1);
    h.events();
    h.store.release(a.id).await.unwrap();
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("bob"));
    assert_eq!(holder(&h, "r2").await.as_deref(), Some("bob"));
    let events = h.events();
    assert_eq!(events[0].kind, EventType::LockReleased);
    assert_eq!(events[1].kind, EventType::QueueGranted);
    assert_eq!(events[1].ticket_id, Some(t.id));
    assert_eq!(events[1].fencing_tokens.as_ref().unwrap().len(), 2);
}

/// A ticket is granted only when it is the head of every queue it is in.
pub async fn a_ticket_waits_until_it_heads_every_queue(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(h.acquire(h.req("alice", &["r1"])).await.unwrap());
    let b = granted(h.acquire(h.req("bob", &["r2"])).await.unwrap());
    // carol waits for r1 then dave waits for r1+r2: dave is behind carol on r1.
    let deadline = h.later(600 * SEC);
    queued(
        h.acquire(h.req("carol", &["r1"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    let d = queued(
        h.acquire(h.req("dave", &["r1", "r2"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    assert_eq!(d.position[&name("r1")], 2);
    assert_eq!(d.position[&name("r2")], 1);
    h.store.release(b.id).await.unwrap();
    assert_eq!(holder(&h, "r2").await, None, "dave is not yet head of r1");
    // r2 is free but promised to dave: a newcomer of equal priority is refused.
    match h.acquire(h.req("erin", &["r2"])).await {
        Err(Error::Locked { holder, .. }) => assert!(holder.is_none()),
        other => panic!("expected locked, got {other:?}"),
    }
    h.store.release(a.id).await.unwrap();
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("carol"));
    let c = h
        .store
        .list(LeaseFilter {
            owner: Some(owner("carol")),
            ..Default::default()
        })
        .await
        .unwrap();
    h.store.release(c[0].id).await.unwrap();
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("dave"));
    assert_eq!(holder(&h, "r2").await.as_deref(), Some("dave"));
}

/// Queue order: higher priority first, then enqueue order.
pub async fn queue_order_is_priority_then_fifo(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let mut current = granted(h.acquire(h.req("holder", &["r"])).await.unwrap());
    let deadline = h.later(600 * SEC);
    for (who, p) in [
        ("low1", Priority::Low),
        ("normal1", Priority::Normal),
        ("high1", Priority::High),
        ("critical1", Priority::Critical),
        ("normal2", Priority::Normal),
        ("high2", Priority::High),
    ] {
        h.advance(SEC);
        queued(
            h.acquire(h.req(who, &["r"]).priority(p).wait_until(deadline))
                .await
                .unwrap(),
        );
    }
    let info = h.store.resource(name("r")).await.unwrap();
    let order: Vec<_> = info.queue.iter().map(|t| t.owner.to_string()).collect();
    assert_eq!(
        order,
        ["critical1", "high1", "high2", "normal1", "normal2", "low1"]
    );
    for (i, t) in info.queue.iter().enumerate() {
        assert_eq!(t.position[&name("r")], i as u32 + 1);
        assert!(t.lease_id.is_none(), "queue listings do not show lease ids");
    }
    let mut granted_order = Vec::new();
    for _ in 0..6 {
        h.store.release(current.id).await.unwrap();
        current = h
            .store
            .resource(name("r"))
            .await
            .unwrap()
            .holder
            .expect("handed off");
        granted_order.push(current.owner.to_string());
    }
    assert_eq!(granted_order, order);
}

/// Anti-starvation: effective priority rises one level per threshold waited, capped by the boost.
pub async fn aging_lets_old_tickets_overtake_up_to_the_boost_cap(f: &dyn StoreFactory) {
    for (boost, expected_first) in [(3u8, "old-low"), (1u8, "new-high")] {
        let h = Harness::new(
            f,
            TableConfig {
                starvation_threshold: 60 * SEC,
                max_priority_boost: boost,
                ..TableConfig::default()
            },
        )
        .await;
        let a = granted(
            h.acquire(h.req("holder", &["r"]).ttl(Some(3600 * SEC)))
                .await
                .unwrap(),
        );
        let deadline = h.later(3000 * SEC);
        queued(
            h.acquire(
                h.req("old-low", &["r"])
                    .priority(Priority::Low)
                    .wait_until(deadline),
            )
            .await
            .unwrap(),
        );
        h.advance(130 * SEC);
        // old-low has waited two thresholds: low + 2 = high (or normal, with boost 1).
        let t = queued(
            h.acquire(
                h.req("new-high", &["r"])
                    .priority(Priority::High)
                    .wait_until(deadline),
            )
            .await
            .unwrap(),
        );
        assert_eq!(t.effective_priority, Priority::High);
        let info = h.store.resource(name("r")).await.unwrap();
        let expected_eff = if boost == 3 {
            Priority::High
        } else {
            Priority::Normal
        };
        assert_eq!(
            info.queue
                .iter()
                .find(|t| t.owner.as_str() == "old-low")
                .unwrap()
                .effective_priority,
            expected_eff
        );
        h.store.release(a.id).await.unwrap();
        assert_eq!(
            holder(&h, "r").await.as_deref(),
            Some(expected_first),
            "boost {boost}"
        );
    }
}

/// Aging re-examines a free resource whose head waits elsewhere: a ticket that overtakes it by
/// aging is granted when its effective priority rises, by the timer, without any request.
pub async fn aging_regrants_a_stalled_queue_at_the_step(f: &dyn StoreFactory) {
    let h = Harness::new(
        f,
        TableConfig {
            starvation_threshold: 60 * SEC,
            max_priority_boost: 3,
            ..TableConfig::default()
        },
    )
    .await;
    let t0 = h.now();
    let y = granted(
        h.acquire(h.req("y", &["r1"]).ttl(Some(3600 * SEC)))
            .await
            .unwrap(),
    );
    granted(
        h.acquire(h.req("x", &["r2"]).ttl(Some(3600 * SEC)))
            .await
            .unwrap(),
    );
    let deadline = h.later(3000 * SEC);
    queued(
        h.acquire(
            h.req("old-low", &["r1"])
                .priority(Priority::Low)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    h.advance(SEC);
    queued(
        h.acquire(
            h.req("high", &["r1", "r2"])
                .priority(Priority::High)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    // r1 is freed; its head (high) also needs r2, which x holds: r1 is stalled, free.
    h.store.release(y.id).await.unwrap();
    assert_eq!(holder(&h, "r1").await, None);
    // Both reach critical; old-low reaches it at 180s and, being older, then leads r1.
    let step = h.store.next_deadline().await.unwrap().unwrap();
    assert!(
        step <= t0.plus(180 * SEC),
        "the next aging step must be scheduled: {step:?}"
    );
    h.clock.set(t0.plus(179 * SEC));
    h.store.expire_due().await.unwrap();
    assert_eq!(holder(&h, "r1").await, None);
    h.clock.set(t0.plus(180 * SEC));
    h.store.expire_due().await.unwrap();
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("old-low"));
}

/// Handoff on every way a resource becomes free: release, expiry, force-release, cleanup.
pub async fn handoff_happens_in_the_same_step_on_every_release_path(f: &dyn StoreFactory) {
    for path in ["release", "expiry", "force", "cleanup"] {
        let h = Harness::new(f, TableConfig::default()).await;
        let a = granted(
            h.acquire(h.req("alice", &["r"]).ttl(Some(10 * SEC)))
                .await
                .unwrap(),
        );
        let t = queued(
            h.acquire(h.req("bob", &["r"]).wait_until(h.later(600 * SEC)))
                .await
                .unwrap(),
        );
        h.events();
        match path {
            "release" => drop(h.store.release(a.id).await.unwrap()),
            "expiry" => {
                h.advance(10 * SEC);
                let expired = h.store.expire_due().await.unwrap();
                assert_eq!(expired.len(), 1);
                assert_eq!(expired[0].state, LeaseState::Expired);
            }
            "force" => {
                let l = h
                    .store
                    .force_release(name("r"), "stuck".into())
                    .await
                    .unwrap();
                assert_eq!(l.state, LeaseState::ForceReleased);
            }
            _ => {
                h.advance(11 * SEC);
                assert_eq!(h.store.expire_due().await.unwrap().len(), 1);
            }
        }
        let events = h.events();
        let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
        let freed = match path {
            "release" => EventType::LockReleased,
            "force" => EventType::LockForceReleased,
            _ => EventType::LockExpired,
        };
        assert_eq!(kinds, vec![freed, EventType::QueueGranted], "{path}");
        assert_eq!(events[1].ticket_id, Some(t.id));
        assert_eq!(events[1].fencing_token, Some(2));
        let l = h.store.resource(name("r")).await.unwrap().holder.unwrap();
        assert_eq!(
            (l.owner.as_str(), l.id),
            ("bob", t.lease_id.unwrap()),
            "{path}"
        );
    }
}

/// Expiry is exact: held until the deadline, expired at it, even if only a later request notices.
pub async fn leases_expire_exactly_at_their_deadline(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(
        h.acquire(h.req("alice", &["r"]).ttl(Some(10 * SEC)))
            .await
            .unwrap(),
    );
    assert_eq!(h.store.next_deadline().await.unwrap(), a.expires_at);
    h.advance(Duration::from_millis(9_999));
    assert!(matches!(
        h.acquire(h.req("bob", &["r"])).await,
        Err(Error::Locked { .. })
    ));
    h.advance(Duration::from_millis(1));
    // Past its deadline, not yet reaped: shown as expired.
    assert_eq!(
        h.store.get_lease(a.id).await.unwrap().unwrap().state,
        LeaseState::Expired
    );
    let expired = h
        .store
        .list(LeaseFilter {
            state: Some(StateFilter::Expired),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(expired.len(), 1);
    // Any operation catches up with the clock first.
    let b = granted(h.acquire(h.req("bob", &["r"])).await.unwrap());
    assert_eq!(b.fencing_token("r"), Some(2));
    assert!(h.kinds().contains(&EventType::LockExpired));
    assert_eq!(h.store.get_lease(a.id).await.unwrap(), None);
    assert!(matches!(
        h.store.renew(a.id, None).await,
        Err(Error::NotFound { .. })
    ));
}

/// Renew sets expires_at = now + ttl (its own ttl, or a new one within max-timeout).
pub async fn renew_extends_from_now(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(
        h.acquire(h.req("alice", &["r"]).ttl(Some(10 * SEC)))
            .await
            .unwrap(),
    );
    h.advance(5 * SEC);
    let r = h.store.renew(a.id, None).await.unwrap();
    assert_eq!(r.expires_at, Some(h.later(10 * SEC)));
    let r = h.store.renew(a.id, Some(30 * SEC)).await.unwrap();
    assert_eq!(
        (r.ttl, r.expires_at),
        (Some(30 * SEC), Some(h.later(30 * SEC)))
    );
    assert!(h
        .kinds()
        .ends_with(&[EventType::LockRenewed, EventType::LockRenewed]));
    h.advance(29 * SEC);
    h.store.expire_due().await.unwrap();
    assert_eq!(holder(&h, "r").await.as_deref(), Some("alice"));
    match h.store.renew(a.id, Some(3 * 3600 * SEC)).await {
        Err(Error::InvalidRequest { field, .. }) => assert_eq!(field, "ttl"),
        other => panic!("expected invalid ttl, got {other:?}"),
    }
}

/// A ttl above max-timeout is refused, never cut; no expiry only when allowed.
pub async fn ttl_limits_are_enforced(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    for ttl in [Some(2 * 3600 * SEC + SEC), Some(Duration::ZERO), None] {
        match h.acquire(h.req("alice", &["r"]).ttl(ttl)).await {
            Err(e @ Error::InvalidRequest { .. }) => assert_eq!(e.field(), Some("ttl"), "{e}"),
            other => panic!("expected invalid ttl for {ttl:?}, got {other:?}"),
        }
    }
    let exactly_max = granted(
        h.acquire(h.req("alice", &["r"]).ttl(Some(2 * 3600 * SEC)))
            .await
            .unwrap(),
    );
    assert_eq!(exactly_max.ttl, Some(2 * 3600 * SEC));
    let h = Harness::new(
        f,
        TableConfig {
            allow_no_ttl: true,
            ..TableConfig::default()
        },
    )
    .await;
    let forever = granted(
        h.acquire(h.req("atlantis", &["r"]).ttl(None))
            .await
            .unwrap(),
    );
    assert_eq!(forever.expires_at, None);
    assert_eq!(h.store.next_deadline().await.unwrap(), None);
}

/// Tickets time out at their deadline (`queue.timeout`) and are never granted after it.
pub async fn tickets_time_out_at_their_deadline(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let a = granted(
        h.acquire(h.req("alice", &["r"]).ttl(Some(60 * SEC)))
            .await
            .unwrap(),
    );
    let t = queued(
        h.acquire(h.req("bob", &["r"]).detached_until(h.later(30 * SEC)))
            .await
            .unwrap(),
    );
    assert!(t.detached);
    assert_eq!(
        h.store.next_deadline().await.unwrap(),
        Some(h.later(30 * SEC))
    );
    h.events();
    h.advance(30 * SEC);
    h.store.expire_due().await.unwrap();
    let events = h.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventType::QueueTimeout);
    assert_eq!(events[0].ticket_id, Some(t.id));
    assert_eq!(h.store.get_ticket(t.id).await.unwrap(), None);
    h.store.release(a.id).await.unwrap();
    assert_eq!(holder(&h, "r").await, None);
}

/// max-queue-size: the request that would exceed it is refused with `queue_full`.
pub async fn a_full_queue_refuses_with_queue_full(f: &dyn StoreFactory) {
    let h = Harness::new(
        f,
        TableConfig {
            max_queue_size: 2,
            ..TableConfig::default()
        },
    )
    .await;
    granted(h.acquire(h.req("alice", &["r"])).await.unwrap());
    let deadline = h.later(60 * SEC);
    queued(
        h.acquire(h.req("b", &["r"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    queued(
        h.acquire(h.req("c", &["r"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    match h.acquire(h.req("d", &["r"]).wait_until(deadline)).await {
        Err(Error::QueueFull { resource, max }) => assert_eq!((resource.as_str(), max), ("r", 2)),
        other => panic!("expected queue_full, got {other:?}"),
    }
}

/// A request's own queue limits (its policy's max-queue-size) cap the queues of the resources
/// they name, below the table's max-queue-size, and leave the others alone.
pub async fn a_requests_queue_limits_cap_the_resources_they_name(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(h.acquire(h.req("alice", &["r"])).await.unwrap());
    granted(h.acquire(h.req("alice", &["s"])).await.unwrap());
    let deadline = h.later(60 * SEC);
    let capped = |who: &str, res: &[&str]| {
        h.req(who, res)
            .wait_until(deadline)
            .queue_limit("r", 1)
            .queue_limit("elsewhere", 1)
    };
    queued(h.acquire(capped("b", &["r"])).await.unwrap());
    match h.acquire(capped("c", &["r", "s"])).await {
        Err(Error::QueueFull { resource, max }) => assert_eq!((resource.as_str(), max), ("r", 1)),
        other => panic!("expected queue_full at 1, got {other:?}"),
    }
    // `s` is not capped by the request: its queue takes several.
    queued(h.acquire(capped("c", &["s"])).await.unwrap());
    queued(h.acquire(capped("d", &["s"])).await.unwrap());
    // A request without limits sees only the table's max-queue-size.
    queued(
        h.acquire(h.req("e", &["r"]).wait_until(deadline))
            .await
            .unwrap(),
    );
}

/// Fencing tokens strictly increase per resource, independently, through every kind of grant.
pub async fn fencing_tokens_strictly_increase_per_resource(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let mut last = std::collections::HashMap::new();
    let mut check = |l: &Lease| {
        for r in &l.resources {
            let prev = last
                .insert(r.resource.to_string(), r.fencing_token)
                .unwrap_or(0);
            assert!(
                r.fencing_token > prev,
                "{} went from {prev} to {}",
                r.resource,
                r.fencing_token
            );
        }
    };
    for round in 0..5 {
        let a = granted(
            h.acquire(h.req("a", &["x", "y"]).ttl(Some(5 * SEC)))
                .await
                .unwrap(),
        );
        check(&a);
        let t = queued(
            h.acquire(h.req("b", &["x"]).wait_until(h.later(60 * SEC)))
                .await
                .unwrap(),
        );
        if round % 2 == 0 {
            h.store.release(a.id).await.unwrap();
        } else {
            h.advance(5 * SEC);
            h.store.expire_due().await.unwrap();
        }
        let b = h
            .store
            .get_lease(t.lease_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        check(&b);
        h.store.release(b.id).await.unwrap();
        let c = granted(h.acquire(h.req("c", &["y"])).await.unwrap());
        check(&c);
        h.store
            .force_release(name("y"), "test".into())
            .await
            .unwrap();
    }
    assert_eq!(
        h.store
            .resource(name("x"))
            .await
            .unwrap()
            .last_fencing_token,
        10
    );
    assert_eq!(
        h.store
            .resource(name("y"))
            .await
            .unwrap()
            .last_fencing_token,
        10
    );
}

/// Cancelling a ticket removes it (`queue.cancelled`) and lets the ticket behind it through.
pub async fn cancel_removes_a_ticket_and_unblocks_the_next(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(
        h.acquire(h.req("x", &["r2"]).ttl(Some(3600 * SEC)))
            .await
            .unwrap(),
    );
    let deadline = h.later(600 * SEC);
    let blocked = queued(
        h.acquire(
            h.req("wide", &["r1", "r2"])
                .priority(Priority::High)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    queued(
        h.acquire(h.req("narrow", &["r1"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    assert_eq!(
        holder(&h, "r1").await,
        None,
        "narrow waits behind wide on free r1"
    );
    h.events();
    let cancelled = h
        .store
        .cancel_ticket(blocked.id, CancelReason::Cancelled)
        .await
        .unwrap();
    assert_eq!(cancelled.id, blocked.id);
    let events = h.events();
    assert_eq!(events[0].kind, EventType::QueueCancelled);
    assert_eq!(events[0].reason.as_deref(), Some("cancelled"));
    assert_eq!(events[1].kind, EventType::QueueGranted);
    assert_eq!(holder(&h, "r1").await.as_deref(), Some("narrow"));
    assert!(matches!(
        h.store
            .cancel_ticket(blocked.id, CancelReason::Cancelled)
            .await,
        Err(Error::NotFound { .. })
    ));
}

/// A newcomer of higher priority than everyone queued on a free resource is granted at once.
pub async fn a_higher_priority_newcomer_takes_a_stalled_free_resource(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(h.acquire(h.req("x", &["r2"])).await.unwrap());
    queued(
        h.acquire(h.req("wide", &["r1", "r2"]).wait_until(h.later(60 * SEC)))
            .await
            .unwrap(),
    );
    assert!(matches!(
        h.acquire(h.req("same", &["r1"])).await,
        Err(Error::Locked { .. })
    ));
    let l = granted(
        h.acquire(h.req("urgent", &["r1"]).priority(Priority::Critical))
            .await
            .unwrap(),
    );
    assert_eq!(l.fencing_token("r1"), Some(1));
}

/// Prevention: the enqueue that would close a cycle is refused with the cycle, in order.
pub async fn prevention_refuses_the_request_that_closes_a_cycle(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(h.acquire(h.req("alice", &["r1"])).await.unwrap());
    granted(h.acquire(h.req("bob", &["r2"])).await.unwrap());
    let deadline = h.later(60 * SEC);
    queued(
        h.acquire(h.req("alice", &["r2"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    match h.acquire(h.req("bob", &["r1"]).wait_until(deadline)).await {
        Err(Error::Deadlock { cycle }) => {
            let path: Vec<_> = cycle
                .iter()
                .map(|e| {
                    (
                        e.waiter.to_string(),
                        e.resource.to_string(),
                        e.blocker.to_string(),
                    )
                })
                .collect();
            assert_eq!(
                path,
                vec![
                    ("bob".into(), "r1".into(), "alice".into()),
                    ("alice".into(), "r2".into(), "bob".into())
                ]
            );
        }
        other => panic!("expected deadlock, got {other:?}"),
    }
    assert_eq!(
        h.store.queues().await.unwrap().len(),
        1,
        "the refused request left nothing queued"
    );
    // A third party waiting on both is no cycle.
    queued(
        h.acquire(h.req("carol", &["r1", "r2"]).wait_until(deadline))
            .await
            .unwrap(),
    );
}

/// Prevention also sees cycles through queue order, and an owner waiting for itself.
pub async fn prevention_sees_queue_order_and_self_waits(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let deadline = h.later(60 * SEC);
    granted(h.acquire(h.req("alice", &["r1"])).await.unwrap());
    match h
        .acquire(h.req("alice", &["r1", "r2"]).wait_until(deadline))
        .await
    {
        Err(Error::Deadlock { cycle }) => {
            assert_eq!(cycle.len(), 1);
            assert_eq!(
                (cycle[0].waiter.as_str(), cycle[0].blocker.as_str()),
                ("alice", "alice")
            );
        }
        other => panic!("expected a self-deadlock, got {other:?}"),
    }
    // x holds r2; y queues for r1+r2 (r1 free, y heads it); x then asks for r1: x would wait
    // behind y, who waits for x.
    let h = Harness::new(f, TableConfig::default()).await;
    granted(h.acquire(h.req("x", &["r2"])).await.unwrap());
    queued(
        h.acquire(h.req("y", &["r1", "r2"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    assert!(matches!(
        h.acquire(h.req("x", &["r1"]).wait_until(deadline)).await,
        Err(Error::Deadlock { .. })
    ));
}

async fn two_cycle(f: &dyn StoreFactory, policy: ResolutionPolicy) -> (String, Harness) {
    let h = Harness::new(f, no_prevention()).await;
    let deadline = h.later(600 * SEC);
    granted(h.acquire(h.req("alice", &["a1", "a2"])).await.unwrap());
    granted(h.acquire(h.req("bob", &["b1"])).await.unwrap());
    queued(
        h.acquire(
            h.req("alice", &["b1"])
                .priority(Priority::Low)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    h.advance(SEC);
    queued(
        h.acquire(
            h.req("bob", &["a1"])
                .priority(Priority::High)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    assert_eq!(h.store.find_deadlocks().await.unwrap().len(), 1);
    h.events();
    let records = h.store.resolve_deadlocks(policy).await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].resolution, Resolution::VictimCancelled);
    assert_eq!(records[0].cycle.len(), 2);
    let victim = records[0].victim.as_ref().unwrap().to_string();
    let events = h.events();
    assert!(events
        .iter()
        .any(|e| e.kind == EventType::DeadlockDetected && e.cycle.is_some()));
    let cancel = events
        .iter()
        .find(|e| e.kind == EventType::QueueCancelled)
        .expect("victim cancelled");
    assert_eq!(cancel.reason.as_deref(), Some("deadlock"));
    assert_eq!(cancel.owner.as_ref().unwrap().as_str(), victim);
    assert!(h.store.find_deadlocks().await.unwrap().is_empty());
    (victim, h)
}

/// Detection with each resolution policy picks the documented victim and breaks the cycle.
pub async fn detection_resolves_cycles_by_each_policy(f: &dyn StoreFactory) {
    // alice: ticket low and oldest, holds two resources; bob: ticket high and youngest, holds one.
    for (policy, victim) in [
        (ResolutionPolicy::LowestPriority, "alice"),
        (ResolutionPolicy::Youngest, "bob"),
        (ResolutionPolicy::Oldest, "alice"),
        (ResolutionPolicy::FewestLocks, "bob"),
    ] {
        let (v, _) = two_cycle(f, policy).await;
        assert_eq!(v, victim, "{policy:?}");
    }
    // Nothing to resolve: nothing happens.
    let h = Harness::new(f, no_prevention()).await;
    assert!(h
        .store
        .resolve_deadlocks(ResolutionPolicy::Youngest)
        .await
        .unwrap()
        .is_empty());
}

/// Ticket views: positions per resource and effective priority; queue summaries.
pub async fn queue_views_show_positions_depths_and_ages(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(h.acquire(h.req("x", &["r1", "r2"])).await.unwrap());
    let deadline = h.later(600 * SEC);
    let a = queued(
        h.acquire(h.req("a", &["r1"]).wait_until(deadline))
            .await
            .unwrap(),
    );
    h.advance(10 * SEC);
    let b = queued(
        h.acquire(
            h.req("b", &["r1", "r2"])
                .priority(Priority::High)
                .wait_until(deadline),
        )
        .await
        .unwrap(),
    );
    assert_eq!(b.position[&name("r1")], 1);
    assert!(
        b.lease_id.is_some(),
        "the requester sees its future lease id"
    );
    let a = h.store.get_ticket(a.id).await.unwrap().unwrap();
    assert_eq!(a.position[&name("r1")], 2);
    let queues = h.store.queues().await.unwrap();
    assert_eq!(queues.len(), 2);
    assert_eq!((queues[0].resource.as_str(), queues[0].depth), ("r1", 2));
    assert_eq!(queues[0].by_priority[&Priority::High], 1);
    assert_eq!(queues[0].by_priority[&Priority::Normal], 1);
    assert_eq!(queues[0].oldest_wait, 10 * SEC);
    assert_eq!(queues[1].depth, 1);
}

/// List filters: resource prefix, owner, state and held-longer-than.
pub async fn list_filters_select_leases(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    granted(
        h.acquire(h.req("alice", &["acme/infra/prod"]).ttl(Some(3600 * SEC)))
            .await
            .unwrap(),
    );
    h.advance(100 * SEC);
    granted(
        h.acquire(h.req("bob", &["acme/infra/dev"]).ttl(Some(10 * SEC)))
            .await
            .unwrap(),
    );
    granted(h.acquire(h.req("alice", &["other/x"])).await.unwrap());
    let list = |filter: LeaseFilter| {
        let store = h.store.clone();
        async move {
            let mut owners: Vec<String> = store
                .list(filter)
                .await
                .unwrap()
                .iter()
                .map(|l| l.resources[0].resource.to_string())
                .collect();
            owners.sort();
            owners
        }
    };
    assert_eq!(list(LeaseFilter::default()).await.len(), 3);
    assert_eq!(
        list(LeaseFilter {
            resource_prefix: Some("acme/".into()),
            ..Default::default()
        })
        .await,
        ["acme/infra/dev", "acme/infra/prod"]
    );
    assert_eq!(
        list(LeaseFilter {
            owner: Some(owner("alice")),
            ..Default::default()
        })
        .await,
        ["acme/infra/prod", "other/x"]
    );
    assert_eq!(
        list(LeaseFilter {
            held_longer_than: Some(50 * SEC),
            ..Default::default()
        })
        .await,
        ["acme/infra/prod"]
    );
    h.advance(10 * SEC);
    assert_eq!(
        list(LeaseFilter {
            state: Some(StateFilter::Expired),
            ..Default::default()
        })
        .await,
        ["acme/infra/dev"]
    );
    assert_eq!(
        list(LeaseFilter {
            state: Some(StateFilter::Held),
            ..Default::default()
        })
        .await
        .len(),
        2
    );
}

/// Force-release: only a held resource; the whole lease goes, with the reason in the event.
pub async fn force_release_frees_the_whole_lease_with_a_reason(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    assert!(matches!(
        h.store.force_release(name("r1"), "x".into()).await,
        Err(Error::NotFound { .. })
    ));
    let a = granted(h.acquire(h.req("alice", &["r1", "r2"])).await.unwrap());
    h.events();
    let l = h
        .store
        .force_release(name("r2"), "operator: stuck plan".into())
        .await
        .unwrap();
    assert_eq!((l.id, l.state), (a.id, LeaseState::ForceReleased));
    assert_eq!(holder(&h, "r1").await, None);
    let events = h.events();
    assert_eq!(events[0].kind, EventType::LockForceReleased);
    assert_eq!(events[0].reason.as_deref(), Some("operator: stuck plan"));
}

/// A retried acquire with the same ids gets the first answer; bad requests name their field.
pub async fn retries_are_idempotent_and_bad_requests_name_the_field(f: &dyn StoreFactory) {
    let h = Harness::new(f, TableConfig::default()).await;
    let req = h.req("alice", &["r"]);
    let first = granted(h.acquire(req.clone()).await.unwrap());
    match h.acquire(req).await.unwrap() {
        Acquired::Granted { lease, reentrant } => {
            assert_eq!((lease.id, reentrant), (first.id, false))
        }
        other => panic!("{other:?}"),
    }
    let mut empty = h.req("alice", &[]);
    empty.inner.resources.clear();
    assert_eq!(
        h.acquire(empty).await.unwrap_err().field(),
        Some("resources")
    );
    let many: Vec<String> = (0..65).map(|i| format!("r{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        h.acquire(h.req("alice", &many)).await.unwrap_err().field(),
        Some("resources")
    );
    // Duplicates collapse.
    let l = granted(h.acquire(h.req("bob", &["d", "d"])).await.unwrap());
    assert_eq!(l.resources.len(), 1);
}

/// Export and import: a snapshot carries every lease (ids and tokens kept) and ticket into another
/// store; importing again changes nothing; conflicts are skipped with a reason.
pub async fn export_and_import_keep_ids_tokens_and_order(f: &dyn StoreFactory) {
    let a = Harness::new(f, TableConfig::default()).await;
    for _ in 0..3 {
        let l = granted(a.acquire(a.req("x", &["r1"])).await.unwrap());
        a.store.release(l.id).await.unwrap();
    }
    let held = granted(
        a.acquire(a.req("alice", &["r1", "r2"]).ttl(Some(600 * SEC)))
            .await
            .unwrap(),
    );
    let deadline = a.later(600 * SEC);
    let t1 = queued(
        a.acquire(a.req("bob", &["r1"]).detached_until(deadline))
            .await
            .unwrap(),
    );
    let t2 = queued(
        a.acquire(
            a.req("carol", &["r1"])
                .priority(Priority::High)
                .detached_until(deadline),
        )
        .await
        .unwrap(),
    );
    let snapshot = a.store.snapshot().await.unwrap();
    assert_eq!((snapshot.leases.len(), snapshot.tickets.len()), (1, 2));

    let b = Harness::new(f, TableConfig::default()).await;
    b.clock.set(a.now());
    let conflicting = granted(b.acquire(b.req("zed", &["r9"])).await.unwrap());
    b.events();
    let report = b.store.import(snapshot.clone()).await.unwrap();
    let kinds: Vec<_> = b
        .events()
        .iter()
        .map(|e| (e.kind, e.reason.clone()))
        .collect();
    let imported = Some("imported".to_string());
    assert_eq!(
        kinds,
        vec![
            (EventType::LockAcquired, imported.clone()),
            (EventType::QueueEnqueued, imported.clone()),
            (EventType::QueueEnqueued, imported)
        ],
        "an import is announced like any other transition"
    );
    assert_eq!(
        (report.leases, report.tickets, report.skipped.len()),
        (1, 2, 0),
        "{report:?}"
    );
    let info = b.store.resource(name("r1")).await.unwrap();
    assert_eq!(info.holder.as_ref().unwrap().id, held.id);
    assert_eq!(info.holder.as_ref().unwrap().fencing_token("r1"), Some(4));
    let order: Vec<_> = info.queue.iter().map(|t| t.id).collect();
    assert_eq!(order, vec![t2.id, t1.id], "priority order survives");
    assert_eq!(
        b.store
            .get_lease(conflicting.id)
            .await
            .unwrap()
            .unwrap()
            .owner
            .as_str(),
        "zed"
    );

    let again = b.store.import(snapshot).await.unwrap();
    assert_eq!(
        (again.leases, again.tickets, again.skipped.len()),
        (0, 0, 3),
        "importing twice changes nothing"
    );
    b.store.release(held.id).await.unwrap();
    let next = b.store.resource(name("r1")).await.unwrap().holder.unwrap();
    assert_eq!(
        (next.owner.as_str(), next.fencing_token("r1")),
        ("carol", Some(5)),
        "tokens continue from the export"
    );

    // A lease whose resource is held here is skipped, with the reason.
    let c = Harness::new(f, TableConfig::default()).await;
    c.clock.set(a.now());
    granted(c.acquire(c.req("local", &["r2"])).await.unwrap());
    let report = c
        .store
        .import(a.store.snapshot().await.unwrap())
        .await
        .unwrap();
    assert_eq!(report.leases, 0);
    assert!(
        report
            .skipped
            .iter()
            .any(|s| s.reason.contains("r2 is held by local")),
        "{report:?}"
    );
}

/// An import that holds any record a request could not have made is refused whole, naming the
/// record and field; nothing of it is written, and (durable stores) the store still reopens.
pub async fn imports_refuse_what_a_request_could_not_make(f: &dyn StoreFactory) {
    use crate::model::{Timestamp, MAX_FENCING_TOKEN};
    let a = Harness::new(f, TableConfig::default()).await;
    granted(a.acquire(a.req("alice", &["r1", "r2"])).await.unwrap());
    queued(
        a.acquire(a.req("bob", &["r1"]).detached_until(a.later(60 * SEC)))
            .await
            .unwrap(),
    );
    let good = a.store.snapshot().await.unwrap();
    type Edit = Box<dyn Fn(&mut crate::table::Snapshot)>;
    let cases: Vec<(&str, Edit)> = vec![
        (
            "leases[0].resources[1]",
            Box::new(|s| s.leases[0].resources[1].resource = name("r1")),
        ),
        (
            "leases[0].acquired_at",
            Box::new(|s| {
                s.leases[0].acquired_at = Timestamp::parse_rfc3339("9999-12-31T23:00:00Z").unwrap();
            }),
        ),
        (
            "leases[0].ttl",
            Box::new(|s| s.leases[0].ttl = Some(Duration::from_secs(100_000_000 * 3600))),
        ),
        (
            "leases[0].ttl",
            Box::new(|s| s.leases[0].ttl = Some(Duration::from_micros(999))),
        ),
        (
            "leases[0].expires_at",
            Box::new(|s| s.leases[0].expires_at = None),
        ),
        (
            "leases[0].resources",
            Box::new(|s| {
                s.leases[0].resources = (0..65)
                    .map(|i| crate::model::HeldResource {
                        resource: name(&format!("many{i}")),
                        fencing_token: 1,
                    })
                    .collect();
            }),
        ),
        (
            "leases[0].resources[0].fencing_token",
            Box::new(|s| s.leases[0].resources[0].fencing_token = u64::MAX),
        ),
        (
            "leases[0].resources[0].fencing_token",
            Box::new(|s| s.leases[0].resources[0].fencing_token = 0),
        ),
        ("fences[0]", Box::new(|s| s.fences[0].1 = u64::MAX)),
        ("fences[0]", Box::new(|s| s.fences[0].1 = MAX_FENCING_TOKEN)),
        (
            "tickets[0].resources[1]",
            Box::new(|s| s.tickets[0].resources = vec![name("r1"), name("r1")]),
        ),
        (
            "tickets[0].deadline",
            Box::new(|s| s.tickets[0].deadline = Some(Timestamp::MAX)),
        ),
        (
            "tickets[0].enqueued_at",
            Box::new(|s| s.tickets[0].enqueued_at = Timestamp::MAX),
        ),
    ];
    let b = Harness::new(f, TableConfig::default()).await;
    b.clock.set(a.now());
    for (field, edit) in cases {
        let mut bad = good.clone();
        edit(&mut bad);
        match b.store.import(bad).await {
            Err(e @ Error::InvalidRequest { .. }) => {
                assert_eq!(e.field(), Some(field), "{e}");
                assert!(
                    e.to_string().contains(field),
                    "the message names the record: {e}"
                );
            }
            other => panic!("{field}: expected invalid_request, got {other:?}"),
        }
        let after = b.store.snapshot().await.unwrap();
        assert_eq!(
            after,
            Default::default(),
            "{field}: a refused import writes nothing"
        );
    }
    assert!(b.events().is_empty(), "a refused import announces nothing");
    let report = b.store.import(good).await.unwrap();
    assert_eq!((report.leases, report.tickets), (1, 1), "{report:?}");
    if f.persists() {
        let Harness { store, clock, .. } = b;
        let store = f.reopen(store, TableConfig::default(), clock).await;
        assert_eq!(store.list(Default::default()).await.unwrap().len(), 1);
    }
}

/// A fencing counter never wraps: the grant that mints the last token is the last one; later
/// requests are refused naming the resource, and waiters for it are cancelled, never granted a
/// smaller token.
pub async fn an_exhausted_fencing_counter_refuses_and_never_wraps(f: &dyn StoreFactory) {
    use crate::model::MAX_FENCING_TOKEN;
    let h = Harness::new(f, TableConfig::default()).await;
    let report = h
        .store
        .import(crate::table::Snapshot {
            fences: vec![(name("r"), MAX_FENCING_TOKEN - 2)],
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(report.skipped.is_empty(), "{report:?}");
    let first = granted(h.acquire(h.req("a", &["r"])).await.unwrap());
    assert_eq!(first.fencing_token("r"), Some(MAX_FENCING_TOKEN - 1));
    let deadline = h.later(60 * SEC);
    let b = queued(
        h.acquire(h.req("b", &["r"]).detached_until(deadline))
            .await
            .unwrap(),
    );
    let c = queued(
        h.acquire(h.req("c", &["other", "r"]).detached_until(deadline))
            .await
            .unwrap(),
    );
    h.events();
    h.store.release(first.id).await.unwrap();
    let second = h.store.resource(name("r")).await.unwrap().holder.unwrap();
    assert_eq!(
        (second.owner.as_str(), second.fencing_token("r")),
        ("b", Some(MAX_FENCING_TOKEN))
    );
    assert!(h.store.get_ticket(b.id).await.unwrap().is_none());
    h.events();
    h.store.release(second.id).await.unwrap();
    let events = h.events();
    let cancelled = events
        .iter()
        .find(|e| e.kind == EventType::QueueCancelled)
        .unwrap_or_else(|| panic!("c's ticket is cancelled: {events:?}"));
    assert_eq!(
        (cancelled.ticket_id, cancelled.reason.as_deref()),
        (Some(c.id), Some("fencing_exhausted"))
    );
    assert!(h.store.get_ticket(c.id).await.unwrap().is_none());
    let info = h.store.resource(name("r")).await.unwrap();
    assert!(info.holder.is_none() && info.queue.is_empty(), "{info:?}");
    assert!(
        h.store
            .resource(name("other"))
            .await
            .unwrap()
            .holder
            .is_none(),
        "the rest of c's request is not granted either"
    );
    for wait in [false, true] {
        let mut req = h.req("d", &["ok", "r"]);
        if wait {
            req = req.detached_until(deadline);
        }
        match h.acquire(req).await {
            Err(e @ Error::InvalidRequest { .. }) => {
                assert_eq!(e.field(), Some("resources[1]"), "{e}");
                assert!(e.to_string().contains("last fencing token"), "{e}");
            }
            other => panic!("an exhausted counter must refuse, got {other:?}"),
        }
    }
    assert_eq!(h.store.list(Default::default()).await.unwrap(), vec![]);
}

/// Every scenario, by name, for running them all in one place.
pub const SCENARIOS: &[&str] = &[
    "try_lock_grants_a_free_resource",
    "try_lock_refuses_a_held_resource_naming_the_holder",
    "reentry_returns_the_same_lease_and_one_release_frees_it",
    "release_frees_and_a_released_lease_is_gone",
    "multi_resource_requests_are_all_or_none",
    "a_ticket_waits_until_it_heads_every_queue",
    "queue_order_is_priority_then_fifo",
    "aging_lets_old_tickets_overtake_up_to_the_boost_cap",
    "aging_regrants_a_stalled_queue_at_the_step",
    "handoff_happens_in_the_same_step_on_every_release_path",
    "leases_expire_exactly_at_their_deadline",
    "renew_extends_from_now",
    "ttl_limits_are_enforced",
    "tickets_time_out_at_their_deadline",
    "a_full_queue_refuses_with_queue_full",
    "a_requests_queue_limits_cap_the_resources_they_name",
    "fencing_tokens_strictly_increase_per_resource",
    "cancel_removes_a_ticket_and_unblocks_the_next",
    "a_higher_priority_newcomer_takes_a_stalled_free_resource",
    "prevention_refuses_the_request_that_closes_a_cycle",
    "prevention_sees_queue_order_and_self_waits",
    "detection_resolves_cycles_by_each_policy",
    "queue_views_show_positions_depths_and_ages",
    "list_filters_select_leases",
    "force_release_frees_the_whole_lease_with_a_reason",
    "retries_are_idempotent_and_bad_requests_name_the_field",
    "export_and_import_keep_ids_tokens_and_order",
    "imports_refuse_what_a_request_could_not_make",
    "an_exhausted_fencing_counter_refuses_and_never_wraps",
];

/// One `#[tokio::test]` per conformance scenario, for the store made by `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@each $factory;
            try_lock_grants_a_free_resource,
            try_lock_refuses_a_held_resource_naming_the_holder,
            reentry_returns_the_same_lease_and_one_release_frees_it,
            refused_reentry_makes_each_request_its_own_holder,
            release_frees_and_a_released_lease_is_gone,
            multi_resource_requests_are_all_or_none,
            a_ticket_waits_until_it_heads_every_queue,
            queue_order_is_priority_then_fifo,
            aging_lets_old_tickets_overtake_up_to_the_boost_cap,
            aging_regrants_a_stalled_queue_at_the_step,
            handoff_happens_in_the_same_step_on_every_release_path,
            leases_expire_exactly_at_their_deadline,
            renew_extends_from_now,
            ttl_limits_are_enforced,
            tickets_time_out_at_their_deadline,
            a_full_queue_refuses_with_queue_full,
            a_requests_queue_limits_cap_the_resources_they_name,
            fencing_tokens_strictly_increase_per_resource,
            cancel_removes_a_ticket_and_unblocks_the_next,
            a_higher_priority_newcomer_takes_a_stalled_free_resource,
            prevention_refuses_the_request_that_closes_a_cycle,
            prevention_sees_queue_order_and_self_waits,
            detection_resolves_cycles_by_each_policy,
            queue_views_show_positions_depths_and_ages,
            list_filters_select_leases,
            force_release_frees_the_whole_lease_with_a_reason,
            retries_are_idempotent_and_bad_requests_name_the_field,
            export_and_import_keep_ids_tokens_and_order,
            imports_refuse_what_a_request_could_not_make,
            an_exhausted_fencing_counter_refuses_and_never_wraps,
        );
    };
    (@each $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let factory = $factory;
                $crate::testkit::conformance::$name(&factory).await;
            }
        )*
    };
}
