//! Group commit without a commit thread: the first waiting request that finds nobody committing
//! becomes the leader, writes everything pending as one log record, `fdatasync`s it, and wakes
//! the others.
//!
//! While the leader syncs, later requests gather in `pending`; when it is done, one of them
//! leads the next batch. So the number of fsyncs per request falls as concurrency rises, one
//! request alone pays one, and no request waits for a thread hand-off: a dedicated commit
//! thread cost about two context switches per request (its wakeup, then the waiters'), which was
//! most of what separated the durable store from the memory store. The leader blocks its tokio
//! worker for the length of one `fdatasync`; the other workers go on serving, and what they
//! queue meanwhile is the next batch.
//!
//! A leader releases the log before it announces the commit, and a waiter tries to lead before
//! it sleeps and after every announcement, so a batch is never left without someone to commit
//! it. A request whose caller goes away while it waits hands its batch to a background task
//! ([`DurableStore`](super::DurableStore)'s guard): its events (a handoff, say) must still be
//! published.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::event::Event;
use crate::store::SinkSlot;

use super::frame::LogFile;
use super::log::Log;
use super::record::{self, Write};

/// Appends one encoded batch durably (the real one is [`LogFile::append`]; tests inject failures).
pub(super) type Append = fn(&mut LogFile, &[u8]) -> std::io::Result<()>;

#[derive(Default)]
pub(super) struct Pending {
    pub writes: Vec<Write>,
    pub events: Vec<Event>,
    /// Sequence number of the last batch entry appended.
    pub seq: u64,
}

/// What has been made durable: everything up to `seq`, unless the store failed. `commits`
/// counts the leaders that finished: a waiter that could not lead waits for it to move.
#[derive(Clone, Debug, Default)]
pub(super) struct Committed {
    pub seq: u64,
    pub commits: u64,
    pub failed: Option<Arc<str>>,
}

pub(super) struct GroupCommit {
    pub pending: Mutex<Pending>,
    /// The log; holding this lock is being the leader. `None` once closed.
    log: Mutex<Option<Log>>,
    append: Append,
    pub committed: watch::Sender<Committed>,
    pub commits: AtomicU64,
    pub records: AtomicU64,
    /// Time spent writing and syncing, in nanoseconds.
    pub commit_nanos: AtomicU64,
    /// The log's sizes as of the last commit (read without waiting for the leader).
    pub log_bytes: AtomicU64,
    pub snapshot_bytes: AtomicU64,
}

impl GroupCommit {
    pub fn new(log: Log, append: Append) -> Self {
        GroupCommit {
            log_bytes: AtomicU64::new(log.log_bytes),
            snapshot_bytes: AtomicU64::new(log.snapshot_bytes),
            pending: Mutex::new(Pending::default()),
            log: Mutex::new(Some(log)),
            append,
            committed: watch::Sender::new(Committed::default()),
            commits: AtomicU64::new(0),
            records: AtomicU64::new(0),
            commit_nanos: AtomicU64::new(0),
        }
    }

    pub fn failed(&self) -> Option<Arc<str>> {
        self.committed.borrow().failed.clone()
    }

    /// Returns once everything up to `seq` is durable (or the store has failed).
    pub async fn wait_durable(&self, seq: u64, sink: &SinkSlot) -> Result<()> {
        let mut rx = self.committed.subscribe();
        // Requests that are ready to run on this worker queue their records first: one commit
        // for all of them. (A request alone is polled again at once.)
        tokio::task::yield_now().await;
        loop {
            let seen = {
                let c = rx.borrow_and_update();
                if let Some(msg) = &c.failed {
                    if c.seq < seq {
                        return Err(Error::Storage(msg.to_string()));
                    }
                }
                if c.seq >= seq {
                    return Ok(());
                }
                c.commits
            };
            if !self.try_lead(sink) {
                // Somebody else is committing: wait until they are done, then look again.
                rx.wait_for(|c| c.commits != seen || c.seq >= seq || c.failed.is_some())
                    .await
                    .map_err(|_| Error::Storage("the store was closed".into()))?;
            }
        }
    }

    /// Commits what is pending, unless another leader is at it (`false`).
    pub fn try_lead(&self, sink: &SinkSlot) -> bool {
        let Ok(mut log) = self.log.try_lock() else {
            return false;
        };
        let announcement = self.lead(&mut log, sink);
        drop(log);
        if let Some((seq, failed)) = announcement {
            self.announce(seq, failed);
        }
        true
    }

    /// Commits one batch; returns what to announce once the log is released.
    fn lead(&self, log: &mut Option<Log>, sink: &SinkSlot) -> Option<(u64, Option<Arc<str>>)> {
        let Some(l) = log.as_mut() else {
            return Some((0, Some("the embedded store is closed".into())));
        };
        let (writes, events, seq) = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            if p.seq <= self.committed.borrow().seq {
                // An earlier leader took everything: nothing to commit or announce.
                return None;
            }
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
            let mut encoded = Vec::new();
            record::encode_batch(&writes, &mut encoded);
            let r = l.append(self.append, &encoded);
            self.log_bytes.store(l.log_bytes, Ordering::Relaxed);
            self.snapshot_bytes
                .store(l.snapshot_bytes, Ordering::Relaxed);
            r
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
                // Facts after commit, and before the callers are told: a caller that returns
                // has its events published. In commit order: the next leader waits for the log.
                sink.publish(events);
                Some((seq, None))
            }
            Err(e) => {
                // The table in memory is now ahead of the disk: refuse everything from here on,
                // so that nothing unacknowledged is ever reported as done.
                tracing::error!(error = %e, "embedded store commit failed; the store stops accepting requests");
                let msg: Arc<str> = Arc::from(format!(
                    "{e}; restart elock to recover the last committed state"
                ));
                {
                    let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
                    p.writes.clear();
                    p.events.clear();
                }
                Some((0, Some(msg)))
            }
        }
    }

    /// Tells the waiters, after the leader has released the log: a waiter woken by this finds
    /// the log free, or held by a leader that will announce in turn.
    fn announce(&self, seq: u64, failed: Option<Arc<str>>) {
        self.committed.send_modify(|c| {
            c.seq = c.seq.max(seq);
            c.commits += 1;
            if failed.is_some() && c.failed.is_none() {
                c.failed = failed;
            }
        });
    }

    /// Commits what is pending and closes the log (blocking: shutdown).
    pub fn close(&self, sink: &SinkSlot) {
        let mut log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        let mut seq = 0;
        if self.failed().is_none() {
            if let Some((s, _)) = self.lead(&mut log, sink) {
                seq = s;
            }
        }
        if let Some(mut l) = log.take() {
            l.close();
        }
        drop(log);
        self.announce(seq, Some("the embedded store is closed".into()));
    }
}
