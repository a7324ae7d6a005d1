//! The client against a real server running in this process (the memory store on a free
//! loopback port): typed calls, the lease guard, the reconnecting event stream.

use std::net::SocketAddr;
use std::time::Duration;

use elock::server::{start, ServeOptions};
use elock_client::api::{ErrorCode, EventType, ListQuery};
use elock_client::{Client, EventItem, LeaseLoss};
use tokio::sync::oneshot;

/// A server on `listen` (`127.0.0.1:0` for any port); dropping the handle stops it.
struct TestServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<Result<(), String>>,
}

impl TestServer {
    async fn start_on(listen: &str) -> TestServer {
        let mut opts = ServeOptions::in_memory();
        opts.config.enhanced_locking.listen = listen.into();
        let started = start(opts).await.expect("start the server");
        let addr = started.addr;
        let (stop, stopped) = oneshot::channel::<()>();
        let done = tokio::spawn(started.run(async {
            let _ = stopped.await;
        }));
        TestServer {
            addr,
            stop: Some(stop),
            done,
        }
    }

    async fn start() -> TestServer {
        TestServer::start_on("127.0.0.1:0").await
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.done).await.unwrap().unwrap();
    }
}

#[tokio::test]
async fn typed_calls_round_trip_and_errors_carry_their_codes() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url()).unwrap();
    let lease = client
        .lock("alice", ["r/1", "r/2"])
        .unwrap()
        .ttl(Duration::from_secs(30))
        .try_acquire()
        .await
        .unwrap();
    assert_eq!(lease.fencing_token("r/1"), Some(1));
    let listed = client.list(&ListQuery::default()).await.unwrap();
    assert_eq!(listed, vec![lease.clone()]);
    let info = client.resource("r/1").await.unwrap();
    assert_eq!(info.holder.as_ref().map(|h| h.id), Some(lease.id));

    let refused = client
        .lock("bob", ["r/2"])
        .unwrap()
        .try_acquire()
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Locked));
    let holder = refused.details().unwrap().holder.clone().flatten().unwrap();
    assert_eq!(holder.owner.as_str(), "alice");

    let waited = client
        .lock("bob", ["r/2"])
        .unwrap()
        .wait(Duration::from_millis(100))
        .acquire()
        .await
        .unwrap_err();
    assert_eq!(waited.code(), Some(ErrorCode::WaitTimeout));
    assert!(waited.is_not_granted());

    let renewed = client
        .renew(lease.id, Some(Duration::from_secs(90)))
        .await
        .unwrap();
    assert_eq!(renewed.ttl, Some(Duration::from_secs(90)));
    client.release(lease.id).await.unwrap();
    let gone = client.release(lease.id).await.unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::NotFound));

    let Err(invalid) = client.lock("alice", [""]) else {
        panic!("an empty resource name is refused before sending")
    };
    assert!(invalid.to_string().contains("resource"), "{invalid}");
    assert!(client.health().await.unwrap().health_score > 0);
    server.stop().await;
}

#[tokio::test]
async fn an_unreachable_server_is_its_own_error() {
    let server = TestServer::start().await;
    let url = server.url();
    server.stop().await;
    let client = Client::builder(&url).retries(1).build().unwrap();
    let e = client.stats().await.unwrap_err();
    assert!(e.is_unreachable(), "{e}");
    assert_eq!(e.code(), None);
}

#[tokio::test]
async fn a_guard_renews_its_lease_and_releases_it_on_drop() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url()).unwrap();
    let guard = client
        .lock("alice", ["guarded"])
        .unwrap()
        .ttl(Duration::from_millis(300))
        .guard()
        .await
        .unwrap();
    let first = guard.lease().expires_at.unwrap();
    // Three ttls later the lease is still held, and its deadline moved on.
    tokio::time::sleep(Duration::from_millis(900)).await;
    let held = client.lease(guard.id()).await.unwrap();
    assert!(held.expires_at.unwrap() > first, "{held:?}");
    assert_eq!(guard.loss(), None);
    let id = guard.id();
    drop(guard);
    // The drop's release runs in the background.
    let mut released = false;
    for _ in 0..50 {
        if client.lease(id).await.is_err() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(released, "a dropped guard released its lease");
    server.stop().await;
}

#[tokio::test]
async fn a_guard_reports_its_loss_at_the_next_renewal() {
    let server = TestServer::start().await;
    let client = Client::new(&server.url()).unwrap();
    let guard = client
        .lock("alice", ["taken-away"])
        .unwrap()
        .ttl(Duration::from_millis(600))
        .guard()
        .await
        .unwrap();
    client
        .force_release("taken-away", Some("maintenance"))
        .await
        .unwrap();
    let loss = tokio::time::timeout(Duration::from_secs(2), guard.lost())
        .await
        .expect("the loss is reported within a renewal period");
    assert!(matches!(loss, LeaseLoss::Gone { .. }), "{loss:?}");
    let e = guard.release().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));
    server.stop().await;
}

#[tokio::test]
async fn a_guard_whose_server_is_gone_reports_expiry_at_the_deadline() {
    let server = TestServer::start().await;
    let client = Client::builder(&server.url()).retries(0).build().unwrap();
    let guard = client
        .lock("alice", ["orphan"])
        .unwrap()
        .ttl(Duration::from_millis(400))
        .guard()
        .await
        .unwrap();
    server.stop().await;
    let started = std::time::Instant::now();
    let loss = tokio::time::timeout(Duration::from_secs(3), guard.lost())
        .await
        .expect("the loss is reported by the deadline");
    assert!(matches!(loss, LeaseLoss::Expired { .. }), "{loss:?}");
    assert!(started.elapsed() < Duration::from_millis(600));
}

#[tokio::test]
async fn the_event_stream_reconnects_and_reports_a_gap_after_a_restart() {
    let server = TestServer::start().await;
    let addr = server.addr.to_string();
    let client = Client::new(&server.url()).unwrap();
    let mut events = client.events(&[EventType::LockAcquired]).await.unwrap();
    for r in ["a", "b"] {
        client
            .lock("alice", [r])
            .unwrap()
            .try_acquire()
            .await
            .unwrap();
    }
    for r in ["a", "b"] {
        let EventItem::Event(e) = events.next().await.unwrap() else {
            panic!("an event")
        };
        assert_eq!(e.resources[0].as_str(), r);
    }
    let seen = events.last_id().unwrap();
    // The server restarts on the same port: its memory and its event ids start again.
    server.stop().await;
    let server = TestServer::start_on(&addr).await;
    client
        .lock("bob", ["c"])
        .unwrap()
        .try_acquire()
        .await
        .unwrap();
    let next = tokio::time::timeout(Duration::from_secs(10), events.next())
        .await
        .unwrap()
        .unwrap();
    let EventItem::Gap(gap) = next else {
        panic!("a gap first, got {next:?}")
    };
    assert_eq!(gap.after, Some(seen));
    let EventItem::Event(e) = events.next().await.unwrap() else {
        panic!("then the event")
    };
    assert_eq!(
        (e.resources[0].as_str(), e.owner.unwrap().as_str()),
        ("c", "bob")
    );
    server.stop().await;
}
