//! The commit leader's side of the data directory: appending batches, and starting a compaction
//! when the logs since the last snapshot outgrow it.
//!
//! Compaction never stops the appends: the leader starts the next log generation (one file
//! creation), and a background thread folds the older snapshot and logs into the new
//! generation's snapshot. Logs are compacted when they hold more than
//! [`LogOptions::compact_after`] bytes and more than the last snapshot, so that the disk holds
//! at most about three times the live state (or the threshold) and a snapshot's cost is
//! paid once per as many bytes of log.

use std::path::PathBuf;
use std::thread::JoinHandle;

use crate::error::{Error, Result};

use super::committer::Append;
use super::files;
use super::frame::LogFile;

/// Tuning of the embedded store's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogOptions {
    /// Log bytes since the last snapshot that start a compaction (when the logs also outgrow
    /// the snapshot).
    pub compact_after: u64,
    /// How far ahead of its data a log file is grown, as zeros synced once: an `fdatasync` that
    /// overwrites allocated blocks need not commit the file's size and block map to the
    /// filesystem's journal, and is cheaper than one that extends the file
    /// (docs/benchmarks.md).
    pub preallocate: u64,
}

impl Default for LogOptions {
    fn default() -> Self {
        LogOptions {
            compact_after: 64 << 20,
            preallocate: 8 << 20,
        }
    }
}

pub(super) struct Log {
    pub dir: PathBuf,
    pub current: LogFile,
    /// The generation the state starts from.
    pub base: u64,
    /// Bytes in the logs from `base` on.
    pub log_bytes: u64,
    pub snapshot_bytes: u64,
    pub options: LogOptions,
    /// The part of `log_bytes` the running compaction folds.
    folded_bytes: u64,
    /// A compaction running in the background: it folds up to this generation.
    compaction: Option<(u64, JoinHandle<Result<u64>>)>,
}

impl Log {
    pub fn new(recovered: files::Recovered, dir: PathBuf, options: LogOptions) -> Log {
        Log {
            dir,
            current: recovered.log,
            base: recovered.base,
            log_bytes: recovered.log_bytes,
            snapshot_bytes: recovered.snapshot_bytes,
            options,
            folded_bytes: 0,
            compaction: None,
        }
    }

    /// Appends one batch durably, then compacts if it is time.
    pub fn append(&mut self, append: Append, batch: &[u8]) -> Result<()> {
        let before = self.current.len;
        append(&mut self.current, batch).map_err(|e| {
            Error::Storage(format!(
                "embedded store: cannot write {}: {e}",
                self.current.path.display()
            ))
        })?;
        self.log_bytes += self.current.len.saturating_sub(before);
        // The batch is durable whatever happens next: a compaction that cannot start is
        // reported and tried again after the next batch, never a failed commit.
        if let Err(e) = self.maybe_compact() {
            tracing::error!(error = %e, "cannot start compacting the embedded store's log");
        }
        Ok(())
    }

    fn maybe_compact(&mut self) -> Result<()> {
        if let Some((until, handle)) = &self.compaction {
            if !handle.is_finished() {
                return Ok(());
            }
            let until = *until;
            let handle = self.compaction.take().expect("checked").1;
            match handle.join() {
                Ok(Ok(size)) => {
                    // The logs before `until` are folded: only those from it on still count.
                    self.log_bytes = self.log_bytes.saturating_sub(self.folded_bytes);
                    self.folded_bytes = 0;
                    self.base = until;
                    self.snapshot_bytes = size;
                }
                Ok(Err(e)) => {
                    // The state is still whole on disk (the old files are kept); try again at
                    // the next threshold.
                    tracing::error!(error = %e, "compacting the embedded store's log failed");
                    self.folded_bytes = 0;
                }
                Err(_) => tracing::error!("the compaction thread panicked"),
            }
        }
        if self.log_bytes < self.options.compact_after.max(self.snapshot_bytes) {
            return Ok(());
        }
        let next = self.current.generation + 1;
        self.current = LogFile::create(&self.dir, next, self.options.preallocate)?;
        self.folded_bytes = self.log_bytes;
        // Generation 1 may have no snapshot (a snapshot file is never empty).
        let (dir, base, has_snapshot) = (self.dir.clone(), self.base, self.snapshot_bytes > 0);
        let handle = std::thread::Builder::new()
            .name("elock-compact".into())
            .spawn(move || files::compact(&dir, base, has_snapshot, next))
            .map_err(|e| Error::Storage(format!("cannot start the compaction thread: {e}")))?;
        self.compaction = Some((next, handle));
        Ok(())
    }

    /// Waits for a compaction in progress (shutdown: its files are whole either way, this only
    /// avoids leaving a temporary file behind).
    pub fn close(&mut self) {
        if let Some((_, handle)) = self.compaction.take() {
            if let Ok(Err(e)) = handle.join() {
                tracing::error!(error = %e, "compacting the embedded store's log failed");
            }
        }
    }
}
