//! The embedded durable store: the lock table in memory, every change in an append-only log on
//! disk before it is acknowledged.
//!
//! This is the classic lock-server design (Chubby, ZooKeeper, etcd): the state lives in memory
//! (the pure [`LockTable`]), each change is one small record in a log, a group commit makes many
//! requests' records durable with one `fdatasync`, and snapshots bound the log.
//!
//! An operation applies to the table under its lock and appends the records it changed to the
//! group-commit queue in the same critical section, so the disk sees changes in table order.
//! The caller then waits until a commit leader has made its sequence number durable. Operations
//! that change nothing (a refused try-lock) still wait for what was pending when they ran: an
//! answer never depends on something that could vanish in a crash. Reads too: a listing taken
//! while a grant's commit is in flight waits for that commit, or else a crash could take back a
//! lease (and its fencing token) that somebody was already shown.
//!
//! On open, the snapshot and the logs are read back and the table rebuilt; what expired while
//! the server was down is handed off by the first operation or the manager's timer. The files
//! and their recovery are described in `files`; the earlier single-file format, converted once,
//! in `legacy`.

mod committer;
mod files;
mod frame;
mod legacy;
mod log;
mod record;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::model::{Cycle, Lease, LeaseId, ResourceName, TicketId, TicketView, Timestamp};
use crate::table::{LeaseFilter, LockTable, Op, Outcome, QueueSummary, ResourceInfo, TableConfig};

use super::{EventSink, SinkSlot, Store};
use committer::GroupCommit;
pub use log::LogOptions;

/// Counters of the group commit: fsyncs per acknowledged write is `commits / writes`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DurableStoreStats {
    /// Transactions committed (each one fsync of the data file).
    pub commits: u64,
    /// Records written.
    pub records: u64,
    /// Operations that changed something.
    pub writes: u64,
    /// Time spent in commits (writing the batch and syncing it).
    pub commit_time: Duration,
    /// Bytes of log since the last snapshot, and the snapshot's size.
    pub log_bytes: u64,
    pub snapshot_bytes: u64,
}

struct Shared {
    table: Mutex<LockTable>,
    /// What the opening itself did (tickets of connected waiters removed), published when the
    /// sink attaches.
    opening_events: Mutex<Vec<crate::event::Event>>,
    group: GroupCommit,
    sink: SinkSlot,
    clock: Arc<dyn Clock>,
}

pub struct DurableStore {
    shared: Arc<Shared>,
    /// The data directory's lock, held until the log is closed.
    _lock: std::fs::File,
}

impl DurableStore {
    /// Opens the store in `dir` (created if missing). A damaged or unreadable store is an error
    /// naming the file and, for a damaged record, its offset.
    pub fn open(dir: &Path, config: TableConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        Self::open_with_options(dir, config, clock, LogOptions::default())
    }

    pub fn open_with_options(
        dir: &Path,
        config: TableConfig,
        clock: Arc<dyn Clock>,
        options: LogOptions,
    ) -> Result<Self> {
        Self::open_with(dir, config, clock, options, frame::LogFile::append)
    }

    fn open_with(
        dir: &Path,
        config: TableConfig,
        clock: Arc<dyn Clock>,
        options: LogOptions,
        append: committer::Append,
    ) -> Result<Self> {
        let lock = files::lock(dir)?;
        convert_legacy(dir)?;
        let started = Instant::now();
        let mut recovered = files::recover(dir, options.preallocate)?;
        let read = started.elapsed();
        let snapshot = std::mem::take(&mut recovered.snapshot);
        let (leases, tickets) = (snapshot.leases.len(), snapshot.tickets.len());
        let mut table = LockTable::restore(config, snapshot)
            .map_err(|e| Error::Storage(format!("{}: {e}", dir.display())))?;
        if started.elapsed() >= Duration::from_secs(1) {
            tracing::info!(
                "opened the embedded store in {}: {leases} leases, {tickets} tickets; records read and decoded in {:.1} s, table rebuilt in {:.1} s",
                dir.display(),
                read.as_secs_f64(),
                (started.elapsed() - read).as_secs_f64()
            );
        }
        let mut log = log::Log::new(recovered, dir.to_path_buf(), options);
        table.track_changes();
        // Waiters that were connected died with the previous process: their tickets go before
        // anything is served, durably, so no grant is ever made to a client that is gone.
        // (Attached tickets are not written; a data directory of an earlier version may still
        // hold some, removed here. What fell due while closed expires, and free resources go
        // to the detached tickets at their head.)
        let dropped = table.drop_attached_tickets(clock.now());
        let changes = table.take_changes();
        if !changes.is_empty() {
            let mut writes = Vec::new();
            record::encode_changes(&table, changes, &mut writes)?;
            let mut encoded = Vec::new();
            record::encode_batch(&writes, &mut encoded);
            log.append(append, &encoded)?;
        }
        let opening_events = table.take_events();
        if dropped > 0 {
            tracing::info!(
                tickets = dropped,
                "removed the tickets of waiters connected before the restart (written by an earlier version)"
            );
        }
        let shared = Arc::new(Shared {
            table: Mutex::new(table),
            opening_events: Mutex::new(opening_events),
            group: GroupCommit::new(log, append),
            sink: SinkSlot::default(),
            clock,
        });
        Ok(DurableStore {
            shared,
            _lock: lock,
        })
    }

    pub fn stats(&self) -> DurableStoreStats {
        let g = &self.shared.group;
        DurableStoreStats {
            commits: g.commits.load(Ordering::Relaxed),
            records: g.records.load(Ordering::Relaxed),
            writes: g.pending.lock().unwrap_or_else(|e| e.into_inner()).seq,
            commit_time: Duration::from_nanos(g.commit_nanos.load(Ordering::Relaxed)),
            log_bytes: g.log_bytes.load(Ordering::Relaxed),
            snapshot_bytes: g.snapshot_bytes.load(Ordering::Relaxed),
        }
    }

    fn table(&self) -> MutexGuard<'_, LockTable> {
        self.shared.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_failed(&self) -> Result<()> {
        match self.shared.group.failed() {
            Some(msg) => Err(Error::Storage(msg.to_string())),
            None => Ok(()),
        }
    }

    /// Applies `op` and queues its writes; returns the outcome and the sequence to wait for.
    fn apply_and_queue(&self, op: Op) -> Result<(Result<Outcome>, u64)> {
        let mut table = self.table();
        self.check_failed()?;
        let applied = table.apply(op, self.shared.clock.now());
        let changes = table.take_changes();
        let g = &self.shared.group;
        let mut pending = g.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !changes.is_empty() || !applied.events.is_empty() {
            if let Err(e) = record::encode_changes(&table, changes, &mut pending.writes) {
                // The table moved but the disk cannot follow: stop, as after a failed commit,
                // so that nothing is answered from a state a restart would not find.
                let msg: Arc<str> = format!("embedded store: {e}").into();
                tracing::error!(error = %msg, "the store stops accepting requests");
                g.committed.send_modify(|c| c.failed = Some(msg));
                return Err(e);
            }
            pending.events.extend(applied.events);
            pending.seq += 1;
        }
        Ok((applied.result, pending.seq))
    }

    async fn wait_durable(&self, seq: u64) -> Result<()> {
        let shared = &self.shared;
        let mut guard = Abandoned(Some((shared.clone(), seq)));
        let result = shared.group.wait_durable(seq, &shared.sink).await;
        guard.0 = None;
        result
    }

    /// Answers a read from the table once everything the read saw is durable. The sequence is
    /// taken under the table's lock, where every change queues its records, so it covers all
    /// the read can show; when that is already on disk (the usual case) nothing waits.
    async fn read<T>(&self, f: impl FnOnce(&LockTable, Timestamp) -> T) -> Result<T> {
        let (value, seq) = {
            let table = self.table();
            let value = f(&table, self.shared.clock.now());
            (value, self.pending_seq())
        };
        let committed = self.shared.group.committed.borrow().clone();
        if committed.seq < seq || committed.failed.is_some() {
            self.wait_durable(seq).await?;
        }
        Ok(value)
    }

    fn pending_seq(&self) -> u64 {
        self.shared
            .group
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .seq
    }

    /// Writes everything pending and closes the log; later requests are refused.
    pub fn close(&self) {
        self.shared.group.close(&self.shared.sink);
    }
}

/// A wait for a commit whose caller went away (a client that disconnected). Its records are
/// pending with nobody to lead their commit, and its events (a handoff to the next waiter, say)
/// must still be published: a task takes the wait over.
struct Abandoned(Option<(Arc<Shared>, u64)>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some((shared, seq)) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    let _ = shared.group.wait_durable(seq, &shared.sink).await;
                });
            }
            Err(_) => {
                shared.group.try_lead(&shared.sink);
            }
        }
    }
}

impl Drop for DurableStore {
    fn drop(&mut self) {
        self.close();
    }
}

/// Converts a data directory of the earlier format (`elock.redb`) once: its records become the
/// first snapshot, and the file is renamed so that it is never read again. A crash part way
/// leaves either the old file alone (converted again next time) or a whole snapshot beside it.
fn convert_legacy(dir: &Path) -> Result<()> {
    let old = dir.join(legacy::FILE_NAME);
    if !old.exists() {
        return Ok(());
    }
    let listing = files::list(dir)?;
    if listing.snapshots.is_empty() && listing.logs.is_empty() {
        let snapshot = legacy::read(&old)?;
        let (leases, tickets) = (snapshot.leases.len(), snapshot.tickets.len());
        files::write_snapshot(dir, 1, record::snapshot_writes(&snapshot)?.into_iter())?;
        tracing::info!(
            leases,
            tickets,
            "converted {} to the log format; the old file is kept as {}",
            old.display(),
            legacy::CONVERTED
        );
    }
    std::fs::rename(&old, dir.join(legacy::CONVERTED))
        .map_err(|e| Error::Storage(format!("cannot rename {}: {e}", old.display())))?;
    files::sync_dir(dir)
}

#[async_trait]
impl Store for DurableStore {
    fn kind(&self) -> &'static str {
        "embedded"
    }

    fn attach_sink(&self, sink: Arc<dyn EventSink>) -> Result<()> {
        self.shared.sink.set(sink)?;
        let events = std::mem::take(
            &mut *self
                .shared
                .opening_events
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        self.shared.sink.publish(events);
        Ok(())
    }

    async fn backend_gauges(&self) -> Result<Vec<(&'static str, i64)>> {
        let s = self.stats();
        Ok(vec![
            ("store_commits", s.commits as i64),
            ("store_writes", s.writes as i64),
            ("store_log_bytes", s.log_bytes as i64),
            ("store_snapshot_bytes", s.snapshot_bytes as i64),
        ])
    }

    async fn apply(&self, op: Op) -> Result<Outcome> {
        let (result, seq) = self.apply_and_queue(op)?;
        self.wait_durable(seq).await?;
        result
    }

    async fn get_lease(&self, id: LeaseId) -> Result<Option<Lease>> {
        self.read(|t, now| t.get_lease(&id, now)).await
    }

    async fn get_ticket(&self, id: TicketId) -> Result<Option<TicketView>> {
        self.read(|t, now| t.get_ticket(&id, now)).await
    }

    async fn list(&self, filter: LeaseFilter) -> Result<Vec<Lease>> {
        self.read(|t, now| t.list(&filter, now)).await
    }

    async fn resource(&self, resource: ResourceName) -> Result<ResourceInfo> {
        self.read(|t, now| t.resource_info(&resource, now)).await
    }

    async fn queues(&self) -> Result<Vec<QueueSummary>> {
        self.read(|t, now| t.queues(now)).await
    }

    async fn find_deadlocks(&self) -> Result<Vec<Cycle>> {
        self.read(|t, now| t.find_deadlocks(now)).await
    }

    async fn next_deadline(&self) -> Result<Option<Timestamp>> {
        Ok(self.table().next_deadline())
    }

    async fn now(&self) -> Result<Timestamp> {
        Ok(self.shared.clock.now())
    }

    async fn ping(&self) -> Result<Duration> {
        let start = Instant::now();
        self.check_failed()?;
        self.wait_durable(self.pending_seq()).await?;
        Ok(start.elapsed())
    }

    async fn flush(&self) -> Result<()> {
        self.wait_durable(self.pending_seq()).await
    }

    async fn set_table_config(&self, config: TableConfig) -> Result<()> {
        self.table().set_config(config);
        Ok(())
    }

    async fn snapshot(&self) -> Result<crate::table::Snapshot> {
        self.read(|t, _| t.snapshot()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::table::AcquireRequest;

    fn failing_disk(_: &mut frame::LogFile, _: &[u8]) -> std::io::Result<()> {
        Err(std::io::Error::other("No space left on device"))
    }

    fn req(n: u128, resource: &str) -> AcquireRequest {
        crate::testkit::try_request(n, "o", resource)
    }

    /// A disk whose first write waits until the test lets it go, then fails.
    static GATE: (Mutex<(bool, bool)>, std::sync::Condvar) =
        (Mutex::new((false, false)), std::sync::Condvar::new());

    fn held_then_failing_disk(_: &mut frame::LogFile, _: &[u8]) -> std::io::Result<()> {
        let (lock, cv) = &GATE;
        let mut g = lock.lock().unwrap();
        g.0 = true; // entered
        cv.notify_all();
        while !g.1 {
            g = cv.wait(g).unwrap();
        }
        Err(std::io::Error::other("I/O error"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 3)]
    async fn a_read_never_shows_what_a_crash_could_take_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            DurableStore::open_with(
                dir.path(),
                TableConfig::default(),
                ManualClock::at_epoch_2026(),
                LogOptions::default(),
                held_then_failing_disk,
            )
            .unwrap(),
        );
        let s = store.clone();
        let grant = tokio::spawn(async move { s.acquire(req(1, "r")).await });
        // The grant is in the table and its commit is on the disk's way.
        tokio::task::spawn_blocking(|| {
            let (lock, cv) = &GATE;
            let mut g = lock.lock().unwrap();
            while !g.0 {
                g = cv.wait(g).unwrap();
            }
        })
        .await
        .unwrap();
        let s = store.clone();
        let listing = tokio::spawn(async move { s.list(Default::default()).await });
        let s = store.clone();
        let lookup = tokio::spawn(async move { s.get_lease(LeaseId::from_u128(1)).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let waited = !listing.is_finished() && !lookup.is_finished();
        {
            let (lock, cv) = &GATE;
            lock.lock().unwrap().1 = true;
            cv.notify_all();
        }
        assert!(waited, "a read must wait for the commit of what it saw");
        assert!(grant.await.unwrap().is_err());
        // The commit failed: the lease a restart would not find is never shown.
        let listing = listing.await.unwrap();
        assert!(matches!(listing, Err(Error::Storage(_))), "{listing:?}");
        let lookup = lookup.await.unwrap();
        assert!(matches!(lookup, Err(Error::Storage(_))), "{lookup:?}");
    }

    #[tokio::test]
    async fn a_failed_commit_is_reported_and_the_store_then_refuses_everything() {
        let dir = tempfile::tempdir().unwrap();
        let store = DurableStore::open_with(
            dir.path(),
            TableConfig::default(),
            ManualClock::at_epoch_2026(),
            LogOptions::default(),
            failing_disk,
        )
        .unwrap();
        match store.acquire(req(1, "r")).await {
            Err(Error::Storage(msg)) => assert!(msg.contains("No space left"), "{msg}"),
            other => panic!("an unacknowledged grant must not be reported as done: {other:?}"),
        }
        for attempt in [
            store.acquire(req(2, "other")).await.map(drop),
            store.flush().await,
            store.ping().await.map(drop),
        ] {
            assert!(matches!(attempt, Err(Error::Storage(_))), "{attempt:?}");
        }
        drop(store);
        // A restart recovers the last committed state: nothing was committed.
        let store = DurableStore::open(
            dir.path(),
            TableConfig::default(),
            ManualClock::at_epoch_2026(),
        )
        .unwrap();
        assert!(store.list(Default::default()).await.unwrap().is_empty());
    }
}

#[cfg(test)]
mod conversion_tests {
    use redb::Database;

    use super::legacy::{FENCES, LEASES, META, TICKETS};
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::LeaseId;
    use crate::store::InMemoryStore;
    use crate::table::{AcquireRequest, Snapshot, WaitMode};

    fn req(n: u128, resource: &str, wait: WaitMode) -> AcquireRequest {
        AcquireRequest {
            wait,
            ..crate::testkit::try_request(n, &format!("o{n}"), resource)
        }
    }

    /// Writes `snapshot` the way the earlier format's store did.
    fn write_redb(path: &Path, snapshot: &Snapshot) {
        let db = Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            tx.open_table(META)
                .unwrap()
                .insert("format", legacy::FORMAT)
                .unwrap();
            let mut leases = tx.open_table(LEASES).unwrap();
            for l in &snapshot.leases {
                let v = serde_json::to_vec(l).unwrap();
                leases
                    .insert(l.id.as_bytes().as_slice(), v.as_slice())
                    .unwrap();
            }
            let mut tickets = tx.open_table(TICKETS).unwrap();
            for t in &snapshot.tickets {
                let v = serde_json::to_vec(t).unwrap();
                tickets
                    .insert(t.id.as_bytes().as_slice(), v.as_slice())
                    .unwrap();
            }
            let mut fences = tx.open_table(FENCES).unwrap();
            for (r, t) in &snapshot.fences {
                fences.insert(r.as_str(), *t).unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[tokio::test]
    async fn a_data_directory_of_the_earlier_format_is_converted_once() {
        let clock = ManualClock::at_epoch_2026();
        let source = InMemoryStore::new(TableConfig::default(), clock.clone());
        for n in 1..=3 {
            source
                .acquire(req(n, &format!("r{n}"), WaitMode::Try))
                .await
                .unwrap();
        }
        source.release(LeaseId::from_u128(3)).await.unwrap();
        let detached = WaitMode::Queue {
            deadline: None,
            detached: true,
        };
        source.acquire(req(4, "r1", detached)).await.unwrap();
        let expected = source.snapshot().await.unwrap();
        assert_eq!((expected.leases.len(), expected.tickets.len()), (2, 1));

        let dir = tempfile::tempdir().unwrap();
        write_redb(&dir.path().join(legacy::FILE_NAME), &expected);
        let store = DurableStore::open(dir.path(), TableConfig::default(), clock.clone()).unwrap();
        assert_eq!(store.snapshot().await.unwrap(), expected);
        store.acquire(req(5, "r3", WaitMode::Try)).await.unwrap();
        let after = store.snapshot().await.unwrap();
        assert_eq!(
            after.leases.last().unwrap().fencing_token("r3"),
            Some(2),
            "the converted fencing counter goes on from where it was"
        );
        drop(store);
        assert!(!dir.path().join(legacy::FILE_NAME).exists());
        assert!(dir.path().join(legacy::CONVERTED).exists());
        // The second opening reads the log, not the old file.
        let store = DurableStore::open(dir.path(), TableConfig::default(), clock).unwrap();
        assert_eq!(store.snapshot().await.unwrap(), after);
    }
}
