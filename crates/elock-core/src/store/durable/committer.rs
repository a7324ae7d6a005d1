//! Group commit: one thread turns every batch of pending writes into one log record and one
//! `fdatasync`.
//!
//! Requests append their writes (in the order the table applied them) and wait for the commit
//! sequence to reach theirs. While the thread is committing one batch, the next one gathers; so
//! the number of fsyncs per request falls as concurrency rises, and one request alone pays one.
//!
//! Like PostgreSQL's `commit_delay` (which waits only when enough other transactions are
//! active), the committer lingers briefly (at most [`LINGER`]) when the previous batch was large
//! and more requests are in flight than are pending: under load, callers woken by the previous
//! commit are about to submit again, and one fsync for all of them beats two half-full ones. At
//! low load batches are small and nothing waits.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::event::Event;
use crate::store::SinkSlot;

use super::frame::LogFile;
use super::log::Log;
use super::record::{self, Write};

/// Appends one encoded batch durably (the real one is [`LogFile::append`]; tests inject failures).
pub(super) type Append = fn(&mut LogFile, &[u8]) -> std::io::Result<()>;

/// The longest the committer waits for in-flight requests to join a batch.
pub(super) const LINGER: Duration = Duration::from_micros(200);

/// A batch at least this large means load: the next batch may linger.
const BUSY_BATCH: usize = 8;

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
    /// Time spent writing and committing, in nanoseconds.
    pub commit_nanos: AtomicU64,
    /// Requests between entering the store and their acknowledgement.
    pub in_flight: AtomicUsize,
    /// The sequence number made durable last (also in `committed`, kept here for the committer).
    last_committed: AtomicU64,
}

impl GroupCommit {
    pub fn new() -> Self {
        GroupCommit {
            pending: Mutex::new(Pending::default()),
            wake: Condvar::new(),
            committed: watch::Sender::new(Committed::default()),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            last_committed: AtomicU64::new(0),
        }
    }

    /// The committer thread's loop: runs until shutdown with nothing left to write.
    pub fn run(&self, mut log: Log, append: Append, sink: &SinkSlot) {
        let mut last_batch = 0usize;
        let mut encoded = Vec::new();
        loop {
            let (writes, events, seq) = {
                let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                while p.writes.is_empty() && p.events.is_empty() && !p.shutdown {
                    p = self.wake.wait(p).unwrap_or_else(|e| e.into_inner());
                }
                if p.writes.is_empty() && p.events.is_empty() {
                    drop(p);
                    log.close();
                    return;
                }
                let linger_until = Instant::now()
                    + if last_batch >= BUSY_BATCH {
                        LINGER
                    } else {
                        Duration::ZERO
                    };
                loop {
                    let pending = (p.seq - self.last_committed.load(Ordering::Relaxed)) as usize;
                    let now = Instant::now();
                    if p.shutdown
                        || pending >= self.in_flight.load(Ordering::Relaxed)
                        || now >= linger_until
                    {
                        break;
                    }
                    p = self
                        .wake
                        .wait_timeout(p, linger_until - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                last_batch = (p.seq - self.last_committed.load(Ordering::Relaxed)) as usize;
                (
                    std::mem::take(&mut p.writes),
                    std::mem::take(&mut p.events),
                    p.seq,
                )
            };
            let started = Instant::now();
            let result = if writes.is_empty() {
                Ok(())
            } else {
                encoded.clear();
                record::encode_batch(&writes, &mut encoded);
                log.append(append, &encoded)
            };
            self.commit_nanos
                .fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
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
                    self.last_committed.store(seq, Ordering::Relaxed);
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
                        log.close();
                        return;
                    }
                }
            }
        }
    }
}
