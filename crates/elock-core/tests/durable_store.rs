//! The conformance suite and the model-based property test (with reopens) against the embedded
//! durable store, plus what only a durable store promises: state survives a reopen, what expired
//! while it was closed is handed off, and damaged files are refused clearly.

use std::sync::Arc;
use std::time::Duration;

use elock_core::clock::{Clock, ManualClock};
use elock_core::error::Error;
use elock_core::event::EventType;
use elock_core::model::{LeaseId, ResourceName, TicketId};
use elock_core::store::{DurableStore, Store};
use elock_core::table::{AcquireRequest, Acquired, TableConfig, WaitMode};
use elock_core::testkit::{model_check, try_request, DurableFactory, RecordingSink};

elock_core::conformance_tests!(DurableFactory::default());

#[test]
fn model_check_durable_store_with_reopens() {
    model_check::run(Arc::new(DurableFactory::default()), 120);
}

fn req(n: u128, owner: &str, resource: &str, ttl: u64, wait: WaitMode) -> AcquireRequest {
    AcquireRequest {
        ttl: Some(Duration::from_secs(ttl)),
        wait,
        ..try_request(n, owner, resource)
    }
}

#[tokio::test]
async fn leases_tickets_and_fencing_counters_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let deadline = clock.now().plus(Duration::from_secs(600));
    {
        let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
        for n in 1..=3 {
            let a = store
                .acquire(req(n, "a", "r", 60, WaitMode::Try))
                .await
                .unwrap();
            store.release(a.lease().unwrap().id).await.unwrap();
        }
        store
            .acquire(req(10, "holder", "r", 60, WaitMode::Try))
            .await
            .unwrap();
        let queued = WaitMode::Queue {
            deadline: Some(deadline),
            detached: true,
        };
        assert!(matches!(
            store
                .acquire(req(11, "waiter", "r", 60, queued))
                .await
                .unwrap(),
            Acquired::Queued { .. }
        ));
    }
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let info = store
        .resource(ResourceName::new("r").unwrap())
        .await
        .unwrap();
    assert_eq!(info.holder.as_ref().unwrap().id, LeaseId::from_u128(10));
    assert_eq!(info.holder.as_ref().unwrap().fencing_token("r"), Some(4));
    assert_eq!(info.queue.len(), 1);
    assert_eq!(info.queue[0].deadline, Some(deadline));
    store.release(LeaseId::from_u128(10)).await.unwrap();
    let next = store
        .get_lease(LeaseId::from_u128(11))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        next.fencing_token("r"),
        Some(5),
        "tokens continue after a restart"
    );
}

/// A store in `dir` where "holder" holds `r` for 10 s and `waiters` (id, owner, detached) queue
/// for it, in order; closed when this returns.
async fn held_with_waiters(
    dir: &std::path::Path,
    clock: &Arc<ManualClock>,
    waiters: &[(u128, &str, bool)],
) {
    let deadline = Some(clock.now().plus(Duration::from_secs(600)));
    let store = DurableStore::open(dir, TableConfig::default(), clock.clone()).unwrap();
    store
        .acquire(req(1, "holder", "r", 10, WaitMode::Try))
        .await
        .unwrap();
    for &(n, who, detached) in waiters {
        let wait = WaitMode::Queue { deadline, detached };
        let queued = store.acquire(req(n, who, "r", 60, wait)).await.unwrap();
        assert!(matches!(queued, Acquired::Queued { .. }));
    }
    store.flush().await.unwrap();
}

/// A waiter connected to the server dies with it: its ticket is never written, so a restart has
/// nothing to restore and no grant is ever made to a client that is gone. Detached tickets are
/// written, survive, and are granted in their turn.
#[tokio::test]
async fn attached_tickets_do_not_survive_a_restart_detached_ones_do() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    held_with_waiters(
        dir.path(),
        &clock,
        &[(2, "a1", false), (3, "d", true), (4, "a2", false)],
    )
    .await;
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let sink = Arc::new(elock_core::testkit::RecordingSink::default());
    store.attach_sink(sink.clone()).unwrap();
    let about_tickets: Vec<_> = sink
        .take()
        .into_iter()
        .filter(|e| e.ticket_id.is_some())
        .map(|e| (e.kind, e.ticket_id))
        .collect();
    assert_eq!(
        about_tickets,
        vec![],
        "the attached tickets were never on disk: nothing to cancel"
    );
    let info = store
        .resource(ResourceName::new("r").unwrap())
        .await
        .unwrap();
    let queue: Vec<_> = info.queue.iter().map(|t| t.id).collect();
    assert_eq!(queue, vec![TicketId::from_u128(3)]);
    // The holder's lease runs out: the detached waiter, not a vanished one, is next.
    clock.advance(Duration::from_secs(11));
    store.expire_due().await.unwrap();
    assert!(store
        .get_lease(LeaseId::from_u128(3))
        .await
        .unwrap()
        .is_some());
    drop(store);
    // The removal was durable: a second restart finds the same state.
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let snapshot = store.snapshot().await.unwrap();
    assert_eq!((snapshot.leases.len(), snapshot.tickets.len()), (1, 0));
}

#[tokio::test]
async fn what_expired_while_closed_is_handed_off_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    {
        let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
        store
            .acquire(req(1, "holder", "r", 10, WaitMode::Try))
            .await
            .unwrap();
        let wait = WaitMode::Queue {
            deadline: Some(clock.now().plus(Duration::from_secs(600))),
            detached: true,
        };
        store
            .acquire(req(2, "waiter", "r", 60, wait))
            .await
            .unwrap();
    }
    clock.advance(Duration::from_secs(30));
    // The lease that expired while the store was closed expires as it opens, and the waiter
    // is handed the resource before anything else is served.
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let sink = Arc::new(elock_core::testkit::RecordingSink::default());
    store.attach_sink(sink.clone()).unwrap();
    let kinds: Vec<_> = sink.take().into_iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventType::LockExpired, EventType::QueueGranted]);
    assert!(store.expire_due().await.unwrap().is_empty());
    let holder = store
        .resource(ResourceName::new("r").unwrap())
        .await
        .unwrap()
        .holder
        .unwrap();
    assert_eq!(
        (holder.owner.as_str(), holder.fencing_token("r")),
        ("waiter", Some(2))
    );
}

#[test]
fn a_damaged_store_file_is_a_clear_error_not_an_empty_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("elock.redb"), vec![0x42u8; 8192]).unwrap();
    let err = DurableStore::open(
        dir.path(),
        TableConfig::default(),
        ManualClock::at_epoch_2026(),
    )
    .err()
    .expect("a damaged file must not open");
    let msg = err.to_string();
    assert!(matches!(err, Error::Storage(_)), "{err:?}");
    assert!(
        msg.contains("elock.redb"),
        "the error names the file: {msg}"
    );
}

#[test]
fn an_unreadable_data_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = DurableStore::open(&file, TableConfig::default(), ManualClock::at_epoch_2026())
        .err()
        .expect("a file is not a data directory");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

#[tokio::test]
async fn a_second_server_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let _first = DurableStore::open(
        dir.path(),
        TableConfig::default(),
        ManualClock::at_epoch_2026(),
    )
    .unwrap();
    let second = DurableStore::open(
        dir.path(),
        TableConfig::default(),
        ManualClock::at_epoch_2026(),
    );
    assert!(second.is_err(), "two stores on one file would both grant");
}

#[tokio::test]
async fn concurrent_requests_share_commits() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        DurableStore::open(
            dir.path(),
            TableConfig::default(),
            Arc::new(elock_core::clock::SystemClock),
        )
        .unwrap(),
    );
    let mut tasks = Vec::new();
    for n in 0..64u128 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..20u128 {
                let id = n * 1000 + k + 1;
                store
                    .acquire(req(id, "o", &format!("r{n}-{k}"), 60, WaitMode::Try))
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.writes, 64 * 20);
    assert!(
        stats.commits < stats.writes,
        "group commit batches concurrent writes: {stats:?}"
    );
}

/// When the holder's lease ran out while the server was down, the restart must not hand the
/// resource to a connected waiter's ticket before that ticket is removed.
#[tokio::test]
async fn a_lease_that_ran_out_while_down_goes_to_a_detached_waiter_not_a_vanished_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    held_with_waiters(
        dir.path(),
        &clock,
        &[(2, "vanished", false), (3, "patient", true)],
    )
    .await;
    clock.advance(Duration::from_secs(30));
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let holder = store
        .resource(ResourceName::new("r").unwrap())
        .await
        .unwrap()
        .holder
        .expect("handed off at the opening");
    assert_eq!(holder.owner.as_str(), "patient");
}

/// A hot lock's handoff to a connected waiter costs one commit (one fsync): queueing the waiter
/// writes nothing, and the release and the grant to the waiter go in the same commit. Counted by
/// the store; a detached ticket, which must survive a restart, is written when it queues.
#[tokio::test]
async fn a_handoff_to_a_connected_waiter_costs_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let deadline = Some(clock.now().plus(Duration::from_secs(600)));
    store
        .acquire(req(1, "holder", "r", 60, WaitMode::Try))
        .await
        .unwrap();
    store.flush().await.unwrap();
    let before = store.stats();
    let attached = WaitMode::Queue {
        deadline,
        detached: false,
    };
    let queued = store
        .acquire(req(2, "waiter", "r", 60, attached))
        .await
        .unwrap();
    assert!(matches!(queued, Acquired::Queued { .. }));
    store.flush().await.unwrap();
    assert_eq!(
        store.stats().commits,
        before.commits,
        "queueing wrote nothing"
    );
    store.release(LeaseId::from_u128(1)).await.unwrap();
    store.flush().await.unwrap();
    assert_eq!(
        store.stats().commits,
        before.commits + 1,
        "the release and the handoff: one commit"
    );
    assert!(store
        .get_lease(LeaseId::from_u128(2))
        .await
        .unwrap()
        .is_some());
    // A detached ticket is written when it queues.
    let before = store.stats();
    let detached = WaitMode::Queue {
        deadline,
        detached: true,
    };
    store
        .acquire(req(3, "later", "r", 60, detached))
        .await
        .unwrap();
    store.flush().await.unwrap();
    assert_eq!(store.stats().commits, before.commits + 1);
}

/// A request whose caller goes away while it waits for its commit (a client that disconnected)
/// still has its records committed and its events published: the next waiter must hear of a
/// release even if the releasing client is gone.
#[tokio::test]
async fn a_wait_abandoned_by_its_caller_is_still_committed_and_published() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::at_epoch_2026();
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
    let sink = Arc::new(RecordingSink::default());
    store.attach_sink(sink.clone()).unwrap();
    store
        .acquire(req(1, "holder", "r", 60, WaitMode::Try))
        .await
        .unwrap();
    // Polled once (the release is applied and queued), then dropped.
    let mut release = store.release(LeaseId::from_u128(1));
    let polled = release
        .as_mut()
        .poll(&mut std::task::Context::from_waker(std::task::Waker::noop()));
    assert!(polled.is_pending(), "the release was still waiting");
    drop(release);
    let mut published = Vec::new();
    for _ in 0..100 {
        published.extend(sink.take().into_iter().map(|e| e.kind));
        if published.contains(&EventType::LockReleased) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        published.contains(&EventType::LockReleased),
        "{published:?}"
    );
    drop(store);
    let store = DurableStore::open(dir.path(), TableConfig::default(), clock).unwrap();
    assert!(store.list(Default::default()).await.unwrap().is_empty());
}
