//! Crash safety of the embedded store: a child process writes through it with many concurrent
//! requests and prints every acknowledgement; the parent kills it with SIGKILL mid-stream,
//! reopens the store and checks that every acknowledged grant and release survived, and that
//! fencing tokens never go backwards across crashes.
//!
//! The child is this test binary itself, re-run with `ELOCK_CRASH_DIR` set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use elock_core::clock::SystemClock;
use elock_core::model::{LeaseId, Owner, Priority, ResourceName, TicketId};
use elock_core::store::{DurableStore, Store};
use elock_core::table::{AcquireRequest, TableConfig, WaitMode};

const WRITERS: usize = 16;

/// The child: writes until killed. Does nothing when run as an ordinary test.
#[test]
fn crash_writer_child() {
    let Ok(dir) = std::env::var("ELOCK_CRASH_DIR") else {
        return;
    };
    let round: u32 = std::env::var("ELOCK_CRASH_ROUND").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let store = Arc::new(
            DurableStore::open(dir.as_ref(), TableConfig::default(), Arc::new(SystemClock))
                .unwrap(),
        );
        let tasks: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut held: Vec<LeaseId> = Vec::new();
                    for n in 0u64.. {
                        if n % 3 == 2 && !held.is_empty() {
                            let id = held.remove(0);
                            // Announced first: a release in flight at the kill may or may not land.
                            println!("REQ release {id}");
                            store.release(id).await.unwrap();
                            println!("ACK release {id}");
                            continue;
                        }
                        let r = format!("crash-{}", (n as usize * WRITERS + w) % 40);
                        let id = LeaseId::random();
                        let req = AcquireRequest {
                            lease_id: id,
                            ticket_id: TicketId::random(),
                            owner: Owner::new(&format!("writer-{round}-{w}")).unwrap(),
                            resources: vec![ResourceName::new(&r).unwrap()],
                            priority: Priority::Normal,
                            ttl: Some(Duration::from_secs(3600)),
                            metadata: None,
                            wait: WaitMode::Try,
                            reentry: Default::default(),
                            queue_limits: Default::default(),
                        };
                        if let Ok(a) = store.acquire(req).await {
                            let lease = a.lease().unwrap();
                            if lease.id == id {
                                println!(
                                    "ACK acquire {id} {r} {}",
                                    lease.resources[0].fencing_token
                                );
                                held.push(id);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
    });
}

#[test]
fn every_acknowledged_operation_survives_kill_9() {
    if std::env::var("ELOCK_CRASH_DIR").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut acquired: HashMap<LeaseId, (String, u64)> = HashMap::new();
    let mut released: Vec<LeaseId> = Vec::new();
    let mut releasing: Vec<LeaseId> = Vec::new();
    for round in 0..3u32 {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_writer_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("ELOCK_CRASH_DIR", dir.path())
            .env("ELOCK_CRASH_ROUND", round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let target = 400 + 150 * round as usize;
        let mut acks = 0;
        while acks < target {
            let line = lines.next().expect("the writer stopped early").unwrap();
            acks += record(&line, &mut acquired, &mut released, &mut releasing);
        }
        child.kill().unwrap(); // SIGKILL: no destructor, no flush, no goodbye.
        child.wait().unwrap();
        // Whatever it printed before dying was acknowledged too.
        for line in lines {
            record(&line.unwrap(), &mut acquired, &mut released, &mut releasing);
        }

        let store =
            DurableStore::open(dir.path(), TableConfig::default(), Arc::new(SystemClock)).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            for (id, (r, token)) in &acquired {
                let resource = store.resource(ResourceName::new(r).unwrap()).await.unwrap();
                assert!(resource.last_fencing_token >= *token, "round {round}: {r} token went backwards");
                let lease = store.get_lease(*id).await.unwrap();
                if released.contains(id) {
                    assert!(lease.is_none(), "round {round}: acknowledged release of {id} was lost");
                } else if releasing.contains(id) {
                    // Requested, not acknowledged: either outcome is correct.
                } else {
                    let lease = lease.unwrap_or_else(|| {
                        panic!(
                            "round {round}: acknowledged lease {id} on {r} (token {token}) was lost; now {:?}",
                            resource.holder.as_ref().map(|h| (h.id, h.owner.to_string(), h.resources[0].fencing_token))
                        )
                    });
                    assert_eq!(lease.fencing_token(r), Some(*token));
                }
            }
        });
        // The next round starts from the recovered state: free everything the test knows of.
        rt.block_on(async {
            for id in acquired.keys() {
                if !released.contains(id) {
                    let _ = store.release(*id).await;
                    released.push(*id);
                }
            }
        });
        drop(store);
    }
    assert!(
        acquired.len() > 500,
        "the writers acknowledged {} grants",
        acquired.len()
    );
}

fn record(
    line: &str,
    acquired: &mut HashMap<LeaseId, (String, u64)>,
    released: &mut Vec<LeaseId>,
    releasing: &mut Vec<LeaseId>,
) -> usize {
    let parts: Vec<&str> = line.split_whitespace().collect();
    match parts.as_slice() {
        ["ACK", "acquire", id, r, token] => {
            acquired.insert(id.parse().unwrap(), (r.to_string(), token.parse().unwrap()));
            1
        }
        ["REQ", "release", id] => {
            releasing.push(id.parse().unwrap());
            0
        }
        ["ACK", "release", id] => {
            released.push(id.parse().unwrap());
            1
        }
        _ => 0,
    }
}
