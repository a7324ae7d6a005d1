//! Group commit: one thread turns every batch of pending writes into one redb transaction.
//!
//! Requests append their writes (in the order the table applied them) and wait for the commit
//! sequence to reach theirs. While the thread is committing one batch, the next one gathers; so
//! the number of fsyncs per request falls as concurrency rises, and one request alone pays one.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use redb::Database;
use tokio::sync::watch;

use crate::event::Event;
use crate::store::SinkSlot;

use super::codec::{write_batch, Write};

#[derive(Default)]
pub(super) struct Pending {
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
    /// Sequence number of the last batch entry appended.
    pub seq: u64,
    pub shutdown: bool,
}

/// What has been made durable: everything up to `seq`, unless the store failed.
#[derive(Clone, Debug, Default)]
pub(super) struct Committed {
    pub seq: u64,
    pub failed: Option<Arc<str>>,
}

pub(super) struct GroupCommit {
    pub pending: Mutex<Pending>,
    pub wake: Condvar,
    pub committed: watch::Sender<Committed>,
    pub commits: AtomicU64,
    pub records: AtomicU64,
}

impl GroupCommit {
    pub fn new() -> Self {
        GroupCommit {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            committed: watch::Sender::new(Committed::default()),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
        }
    }

    /// The committer thread's loop: runs until shutdown with nothing left to write.
    pub fn run(&self, db: Database, sink: &SinkSlot) {
        loop {
            let (writes, events, seq) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.writes.is_empty() && p.events.is_empty() && !p.shutdown {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.writes.is_empty() && p.events.is_empty() {
                    return;
                }
                (
                    std::mem::take(&mut p.writes),
                    std::mem::take(&mut p.events),
                    p.seq,
                )
            };
            let result = if writes.is_empty() {
                Ok(())
            } else {
                write_batch(&db, &writes)
            };
            match result {
                Ok(()) => {
                    if !writes.is_empty() {
                        self.commits.fetch_add(1, Ordering::Relaxed);
                        self.records
                            .fetch_add(writes.len() as u64, Ordering::Relaxed);
                    }
                    // Facts after commit, and before the callers are told: a caller that
                    // returns has its events published.
                    sink.publish(events);
                    self.committed.send_modify(|c| c.seq = seq);
                }
                Err(e) => {
                    // The table in memory is now ahead of the disk: refuse everything from here
                    // on, so that nothing unacknowledged is ever reported as done.
                    tracing::error!(error = %e, "embedded store commit failed; the store stops accepting requests");
                    let msg: Arc<str> = Arc::from(format!(
                        "{e}; restart elock to recover the last committed state"
                    ));
                    self.committed.send_modify(|c| c.failed = Some(msg));
                    let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.writes.clear();
                    p.events.clear();
                    if p.shutdown {
                        return;
                    }
                }
            }
        }
    }
}
